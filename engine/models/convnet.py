"""A plain ReLU ConvNet, the kind of victim Inverting Gradients (Geiping et al., 2020) studies.

Three 3x3 convolution blocks (conv - ReLU - 2x2 max-pool) and a linear classifier. ReLU makes the
gradient piecewise linear in the input, so the inversion loss has kinks the sigmoid LeNet has not.
Wider than the LeNet: its gradient has many more entries than a batch has pixels.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvNet(nn.Module):
    """conv(w) - ReLU - pool - conv(2w) - ReLU - pool - conv(4w) - ReLU - pool - linear."""

    def __init__(self, channels: int = 1, size: int = 28, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = channels
        for c_out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        side = size // 8  # three 2x2 pools: 28 -> 3, 32 -> 4
        self.fc = nn.Linear(c_in * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W)
        return self.fc(self.body(x).flatten(1))  # (B, num_classes)
