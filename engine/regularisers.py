"""Image regularisers: what the attacker believes natural images look like, as a penalty.

Each takes the dummy images (B, C, H, W) and returns a scalar tensor; look one up by name.
"""

from __future__ import annotations

from typing import Callable

import torch

Regulariser = Callable[[torch.Tensor], torch.Tensor]

__all__ = ["REGULARISERS", "create_regulariser", "total_variation", "squared_norm"]


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation, as in Inverting Gradients (Geiping et al. 2020):
    mean |x[h+1, w] - x[h, w]| + mean |x[h, w+1] - x[h, w]|. Natural images are piecewise smooth."""
    dh = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().mean()
    dw = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().mean()
    return dh + dw


def squared_norm(images: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel value around grey 0.5: pulls pixels nobody constrains back to grey."""
    return ((images - 0.5) ** 2).mean()


REGULARISERS: dict[str, Regulariser] = {
    "tv": total_variation,
    "l2": squared_norm,
}


def create_regulariser(name: str) -> Regulariser:
    """The regulariser called `name`."""
    if name not in REGULARISERS:
        raise ValueError(f"unknown regulariser {name!r}; known: {', '.join(REGULARISERS)}")
    return REGULARISERS[name]
