"""A two-layer perceptron: the simplest victim.

For a fully connected first layer the gradient of its weights is the outer product of the
error and the input, so one image's gradient reveals that image exactly (Phong et al., 2017):
a batch of one needs no optimisation at all, only a division.
"""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """flatten - linear(width) - sigmoid - linear(width) - sigmoid - linear."""

    def __init__(self, channels: int = 1, size: int = 28, num_classes: int = 10, width: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * size * size, width),
            nn.Sigmoid(),
            nn.Linear(width, width),
            nn.Sigmoid(),
            nn.Linear(width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W)
        return self.net(x)  # (B, num_classes)
