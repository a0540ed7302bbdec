"""Fit images to a model's input: channel count (grey <-> RGB) and square size.

Grey -> RGB repeats the channel; RGB -> grey takes the ITU-R BT.601 luma
Y = 0.299 R + 0.587 G + 0.114 B (the weights PIL uses for mode "L"). Resizing is bilinear with antialiasing,
so shrinking does not alias and the result stays in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["to_model_input", "to_channels", "resize"]

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C, H, W) with C in {1, 3} -> (N, channels, H, W), channels in {1, 3}."""
    c = images.shape[1]
    if channels not in (1, 3) or c not in (1, 3):
        raise ValueError(f"can convert between 1 and 3 channels only, not {c} -> {channels}")
    if c == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).clone()  # grey -> RGB
    weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)  # RGB -> grey


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size), bilinear with antialiasing; unchanged if already that size."""
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if images.shape[-2:] == (size, size):
        return images
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def to_model_input(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """(N, C, H, W) float in [0, 1] -> (N, channels, size, size): e.g. 25x25 grey faces -> 3x32x32 for a CIFAR model.

    Returns ``images`` itself when it already has that shape (like ``Tensor.to``).
    """
    if images.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(images.shape)}")
    return resize(to_channels(images, channels), size)
