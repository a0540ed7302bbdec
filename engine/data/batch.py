"""Choosing the victim's batch from an ImageSet: by explicit indices, by classes, or at random by seed.

Every draw goes through a `torch.Generator` seeded with ``seed``, so the same arguments give the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .imageset import ImageSet

__all__ = ["Batch", "select_batch"]


@dataclass(frozen=True, eq=False)
class Batch:
    """A batch of images with their labels and their rows in the ImageSet they came from."""

    images: torch.Tensor  # (B, C, H, W) float32 in [0, 1]
    labels: torch.Tensor  # (B,) int64
    indices: torch.Tensor  # (B,) int64, rows of the source ImageSet

    @classmethod
    def from_indices(cls, dataset: ImageSet, indices: torch.Tensor) -> "Batch":
        """The rows ``indices`` (B,) of ``dataset`` as a Batch (copies, not views)."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        return cls(images=dataset.images[indices], labels=dataset.labels[indices], indices=indices.clone())

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        b, c, h, w = self.images.shape
        return f"Batch({b} images {c}x{h}x{w}, labels {self.labels.tolist()}, indices {self.indices.tolist()})"


def select_batch(
    dataset: ImageSet,
    size: int,
    seed: int = 0,
    indices: Sequence[int] | None = None,
    classes: Sequence[int] | None = None,
    unique_labels: bool = False,
) -> Batch:
    """Pick ``size`` images of ``dataset``.

    * ``indices``: exactly those rows, in that order (``len(indices)`` must equal ``size``).
    * ``classes``: random images whose labels are among ``classes``.
    * otherwise: random images of the whole set.
    With ``unique_labels`` each label appears at most once (random distinct labels, from ``classes`` if given).
    """
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    if size > len(dataset):
        raise ValueError(f"batch size {size} exceeds the {len(dataset)} images of {dataset.name!r}")
    if indices is not None:
        if classes is not None or unique_labels:
            raise ValueError("give either explicit indices or classes/unique_labels, not both")
        return Batch.from_indices(dataset, _checked_indices(indices, size, len(dataset)))
    generator = torch.Generator().manual_seed(seed)
    pool = _class_pool(dataset, classes)  # (P,) candidate rows
    if unique_labels:
        return Batch.from_indices(dataset, _one_per_label(dataset.labels, pool, size, generator))
    if size > len(pool):
        raise ValueError(f"batch size {size} exceeds the {len(pool)} images of classes {list(classes or [])}")
    return Batch.from_indices(dataset, pool[torch.randperm(len(pool), generator=generator)[:size]])


def _checked_indices(indices: Sequence[int], size: int, n: int) -> torch.Tensor:
    """``indices`` as an int64 tensor, checked against the batch size and the range 0..n-1."""
    rows = torch.as_tensor(list(indices), dtype=torch.int64)
    if len(rows) != size:
        raise ValueError(f"got {len(rows)} indices for a batch of size {size}")
    bad = rows[(rows < 0) | (rows >= n)]
    if len(bad):
        raise ValueError(f"indices {bad.tolist()} are out of range: the set has {n} images (0..{n - 1})")
    return rows


def _class_pool(dataset: ImageSet, classes: Sequence[int] | None) -> torch.Tensor:
    """Rows whose label is in ``classes`` (all rows if None)."""
    if classes is None:
        return torch.arange(len(dataset))
    wanted = torch.as_tensor(list(classes), dtype=torch.int64)
    bad = wanted[(wanted < 0) | (wanted >= dataset.num_classes)]
    if len(wanted) == 0 or len(bad):
        raise ValueError(
            f"classes must be a non-empty list of labels in 0..{dataset.num_classes - 1}, got {list(classes)}"
        )
    return torch.nonzero(torch.isin(dataset.labels, wanted)).flatten()


def _one_per_label(labels: torch.Tensor, pool: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """``size`` rows of ``pool`` with distinct labels: random labels, then a random row of each."""
    present = torch.unique(labels[pool])
    if size > len(present):
        raise ValueError(
            f"unique_labels: a batch of {size} needs {size} distinct labels, but only {len(present)} "
            f"are available ({present.tolist()})"
        )
    chosen = present[torch.randperm(len(present), generator=generator)[:size]]
    rows = []
    for label in chosen:
        candidates = pool[labels[pool] == label]
        rows.append(candidates[torch.randint(len(candidates), (1,), generator=generator)])
    return torch.cat(rows)
