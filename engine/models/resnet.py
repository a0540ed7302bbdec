"""A small residual network (He et al., 2016) for 28 or 32 pixel images.

A stem convolution and three stages of one basic block each (width w, 2w, 4w; stages 2 and 3
halve the resolution), global average pooling and a linear classifier. Batch norm is left out on
purpose: with it, a batch's gradient mixes its images through the batch statistics, a separate
lesson this lab does not need here, and FedSGD victims in the literature often drop it.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """x + conv(ReLU(conv(x))), with a 1x1 projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.shortcut(x) + self.conv2(torch.relu(self.conv1(x))))


class ResNet(nn.Module):
    """stem - block(w) - block(2w, /2) - block(4w, /2) - average pool - linear."""

    def __init__(self, channels: int = 1, size: int = 28, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.stages = nn.Sequential(
            BasicBlock(width, width, 1),
            BasicBlock(width, 2 * width, 2),
            BasicBlock(2 * width, 4 * width, 2),
        )
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W)
        features = self.stages(torch.relu(self.stem(x)))  # (B, 4w, H/4, W/4)
        return self.fc(features.mean(dim=(2, 3)))  # (B, num_classes)
