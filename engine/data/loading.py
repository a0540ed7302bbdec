"""One entry point for every image set: the bundled sample by default, a torchvision folder when ``root`` is given."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .bundled import BUNDLED, load_bundled
from .imageset import ImageSet
from .torchvision_sets import TORCHVISION_SETS, load_torchvision

__all__ = ["DATASETS", "Part", "load_dataset"]

DATASETS = ("mnist", "fashion_mnist", "lfw_faces", "cifar10")
Part = Literal["train", "test"]


def load_dataset(
    name: str, part: Part = "test", root: str | Path | None = None, download: bool = False
) -> ImageSet:
    """Load set ``name``'s ``part``.

    ``root=None`` and ``download=False``: the small sample bundled in ``assets/`` (500 test / 5000 train images;
    100 faces). Otherwise the full set through torchvision from ``root`` (downloading only if ``download``).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test', got {part!r}")
    if root is None and not download:
        if name == "cifar10":
            raise ValueError(
                "cifar10 has no bundled copy: pass root= pointing at a folder that holds torchvision's "
                "cifar-10-batches-py/, or download=True on a machine with internet access"
            )
        return load_bundled(name, part)
    if name not in TORCHVISION_SETS:
        raise ValueError(
            f"{name!r} comes only from the bundled assets (parts: {', '.join(BUNDLED[name])}); "
            "call load_dataset without root= or download="
        )
    return load_torchvision(name, part, root, download)
