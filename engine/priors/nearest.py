"""The nearest reference image to each query image: is a reconstruction a memorised training image?"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["nearest_training_images"]


def nearest_training_images(images: Tensor, reference: Tensor, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """For each image (N, C, H, W), the index (N,) of the nearest reference image (M, C, H, W) by mean
    squared pixel distance, and that distance (N,). The reference is read ``chunk`` images at a time."""
    if images.ndim != 4 or reference.ndim != 4 or images.shape[1:] != reference.shape[1:]:
        shapes = f"images {tuple(images.shape)} and reference {tuple(reference.shape)}"
        raise ValueError(f"{shapes} must both be (*, C, H, W) with the same C, H, W")
    if len(reference) == 0:
        raise ValueError("the reference holds no images")
    queries = images.flatten(1).to(torch.float64)  # (N, P)
    pixels = queries.shape[1]
    best = torch.full((len(queries),), float("inf"), dtype=torch.float64, device=queries.device)
    index = torch.zeros(len(queries), dtype=torch.int64, device=queries.device)
    for start in range(0, len(reference), chunk):
        block = reference[start : start + chunk].flatten(1).to(queries)  # (m, P)
        distance = torch.cdist(queries, block).pow(2) / pixels  # (N, m) mean squared difference
        value, where = distance.min(dim=1)
        better = value < best
        best = torch.where(better, value, best)
        index = torch.where(better, where + start, index)
    return index, best.clamp_min(0).to(images.dtype)
