"""The small image sets shipped in ``assets/<name>/<part>.npz`` (made by ``scripts/build_assets.py``).

The folder is found relative to this package, not the working directory, so pages and tests load the same
files wherever they run from. See ``assets/PROVENANCE.md`` for sources and licences.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .imageset import ImageSet, from_uint8

__all__ = ["ASSETS_DIR", "BUNDLED", "bundled_path", "load_bundled"]

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
BUNDLED: dict[str, tuple[str, ...]] = {  # set name -> parts shipped
    "mnist": ("test", "train"),
    "fashion_mnist": ("test", "train"),
    "lfw_faces": ("test",),
}


def bundled_path(name: str, part: str) -> Path:
    """Where the bundled ``part`` of set ``name`` lives; ValueError if it is not shipped."""
    if name not in BUNDLED:
        raise ValueError(f"no bundled copy of {name!r}; bundled sets: {', '.join(BUNDLED)}")
    if part not in BUNDLED[name]:
        raise ValueError(f"{name!r} ships only the part(s) {', '.join(BUNDLED[name])}, not {part!r}")
    return ASSETS_DIR / name / f"{part}.npz"


@functools.lru_cache(maxsize=8)
def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``images`` uint8 (N, H, W) and ``labels`` (N,) arrays of one npz file, cached by path."""
    if not path.is_file():
        raise FileNotFoundError(f"bundled asset {path} is missing; rebuild it with `python scripts/build_assets.py`")
    with np.load(path, allow_pickle=False) as npz:
        return npz["images"], npz["labels"]


def load_bundled(name: str, part: str = "test") -> ImageSet:
    """The bundled ``part`` ("test" or "train") of set ``name`` as an ImageSet (fresh tensors each call)."""
    path = bundled_path(name, part)
    images, labels = _read_npz(path)
    return from_uint8(name, images, labels, source=f"bundled assets/{name}/{part}.npz")
