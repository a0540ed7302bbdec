"""An image set in the one shape the lab uses: float images (N, C, H, W) in [0, 1] with int64 labels.

Every loader (bundled assets, torchvision folders) returns an `ImageSet`; the class-name tables of the
known sets live here too, so a set's labels can be read as words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ImageSet", "CLASS_NAMES", "from_uint8"]

DIGITS = tuple(str(d) for d in range(10))
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FACE_SLOTS = tuple(f"slot {i}" for i in range(10))  # LFW subset has no identities: arbitrary label slots
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": DIGITS,
    "fashion_mnist": FASHION,
    "lfw_faces": FACE_SLOTS,
    "cifar10": CIFAR10,
}


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Images (N, C, H, W) float32 in [0, 1], labels (N,) int64 in [0, len(classes)), and where they came from."""

    name: str  # "mnist", "fashion_mnist", "lfw_faces", "cifar10"
    images: torch.Tensor  # (N, C, H, W) float32 in [0, 1]
    labels: torch.Tensor  # (N,) int64
    classes: tuple[str, ...]  # class names, index = label
    source: str  # e.g. "bundled assets/mnist/test.npz"

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != torch.float32:
            raise ValueError(f"images must be float32 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),) or self.labels.dtype != torch.int64:
            raise ValueError(
                f"labels must be int64 ({len(self.images)},), got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(self.classes):
            raise ValueError(f"labels must lie in 0..{len(self.classes) - 1} ({len(self.classes)} classes)")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        """How many classes the labels index into."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return (c, h, w)

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        return (
            f"ImageSet({self.name!r}: {len(self)} images {c}x{h}x{w}, "
            f"{self.num_classes} classes, from {self.source})"
        )


def from_uint8(
    name: str, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, source: str
) -> ImageSet:
    """Build an ImageSet from uint8 images (N, H, W) or (N, H, W, C) and integer labels (N,)."""
    pixels = torch.as_tensor(np.asarray(images))
    if pixels.dtype != torch.uint8 or pixels.ndim not in (3, 4):
        raise ValueError(f"expected uint8 images (N, H, W) or (N, H, W, C), got {pixels.dtype} {tuple(pixels.shape)}")
    pixels = pixels.unsqueeze(1) if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2)  # (N, C, H, W)
    return ImageSet(
        name=name,
        images=pixels.float().div_(255.0).contiguous(),
        labels=torch.as_tensor(np.asarray(labels), dtype=torch.int64).clone(),
        classes=CLASS_NAMES[name],
        source=source,
    )
