"""The LeNet of Deep Leakage from Gradients (Zhu, Liu & Han, NeurIPS 2019).

Three 5x5 convolutions of 12 channels (stride 2, 2, 1) with sigmoid activations and one
linear layer, every weight and bias drawn from U(-0.5, 0.5) as in the paper's notebook.
Sigmoids are smooth and twice differentiable everywhere, which is what made the original
attack work so well: the gradient of the gradient never vanishes on a kink.
"""

from __future__ import annotations

import torch
from torch import nn


class LeNet(nn.Module):
    """DLG's LeNet: conv(12, s2) - sigmoid - conv(12, s2) - sigmoid - conv(12, s1) - sigmoid - linear."""

    def __init__(self, channels: int = 1, size: int = 28, num_classes: int = 10, width: int = 12) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(width, width, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(width, width, kernel_size=5, padding=2, stride=1),
            nn.Sigmoid(),
        )
        side = (size + 3) // 4  # two stride-2 convolutions with padding 2: 28 -> 7, 32 -> 8
        self.fc = nn.Linear(width * side * side, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The notebook's init: every weight and bias from U(-0.5, 0.5)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.uniform_(module.weight, -0.5, 0.5)
                nn.init.uniform_(module.bias, -0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W)
        return self.fc(self.body(x).flatten(1))  # (B, num_classes)
