"""Full image sets read from a torchvision folder on disk (or downloaded by torchvision, where there is a network).

Layouts expected under ``root`` (what torchvision reads with ``download=False``):

    MNIST          root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte          (gunzipped IDX)
    Fashion-MNIST  root/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte   (gunzipped IDX)
    CIFAR-10       root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} (python pickles)

torchvision checks CIFAR-10 files against the md5 sums of the official release (MNIST only checks that the
files exist). When that check fails but the batch files are there, this module reads the pickles itself in
the same format and says so in the set's ``source``: a re-packed or partial copy still loads, and nobody
mistakes it for the official files. Like torchvision, it unpickles them: point ``root`` only at data you trust.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from .imageset import ImageSet, from_uint8

__all__ = ["TORCHVISION_SETS", "default_root", "expected_layout", "load_torchvision"]

TORCHVISION_SETS: dict[str, str] = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


def default_root() -> Path:
    """Where ``download=True`` without a root puts the data: $XDG_CACHE_HOME (or ~/.cache)/gradient_inversion_lab."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "gradient_inversion_lab" / "datasets"


def expected_layout(name: str, root: Path) -> str:
    """The files torchvision expects for set ``name`` under ``root``, in words."""
    if name == "cifar10":
        return f"{root / CIFAR_FOLDER}/ holding data_batch_1..data_batch_5, test_batch and batches.meta"
    raw = root / TORCHVISION_SETS[name] / "raw"
    return (
        f"{raw}/ holding the gunzipped IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte"
    )


def load_torchvision(name: str, part: str, root: str | Path | None, download: bool = False) -> ImageSet:
    """Set ``name`` ("mnist", "fashion_mnist", "cifar10"), ``part`` "train" or "test", from a torchvision folder."""
    from torchvision import datasets

    root = Path(root).expanduser() if root is not None else default_root()
    cls = getattr(datasets, TORCHVISION_SETS[name])
    try:
        tv = cls(str(root), train=part == "train", download=download)
    except (RuntimeError, OSError) as exc:
        if name == "cifar10" and _has_cifar_batches(root, part):
            return _read_cifar_directly(root, part)
        raise _not_found(name, root, download, exc) from exc
    source = f"torchvision {cls.__name__} at {root}"
    return from_uint8(name, np.asarray(tv.data), np.asarray(tv.targets), source=source)


def _not_found(name: str, root: Path, download: bool, exc: Exception) -> FileNotFoundError:
    """A FileNotFoundError naming the root, the layout expected there, and what torchvision said."""
    tried = "download failed" if download else "not found (download=False)"
    return FileNotFoundError(
        f"{TORCHVISION_SETS[name]} {tried} under root={root}: expected {expected_layout(name, root)}. "
        f"torchvision said: {exc}"
    )


def _has_cifar_batches(root: Path, part: str) -> bool:
    """Whether the batch files of ``part`` are present (whatever their checksums)."""
    return all((root / CIFAR_FOLDER / f).is_file() for f in CIFAR_FILES[part])


def _read_cifar_directly(root: Path, part: str) -> ImageSet:
    """Read the CIFAR-10 python batches of ``part`` as torchvision would, without its md5 check."""
    images, labels = [], []
    for filename in CIFAR_FILES[part]:
        path = root / CIFAR_FOLDER / filename
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry.get("data")) if isinstance(entry, dict) else None
        if data is None or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{path} is not a CIFAR-10 python batch (dict with 'data' uint8 (N, 3072))")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # (N, 32, 32, 3)
        labels.extend(entry.get("labels", entry.get("fine_labels", [])))
    source = (
        f"CIFAR-10 python batches at {root} (read directly: torchvision's md5 check failed, "
        "so these files differ from the official release)"
    )
    return from_uint8("cifar10", np.concatenate(images), np.asarray(labels), source=source)
