"""Tests of engine.data: bundled sets, torchvision folders (fake ones written here), uploads, batches, clients."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.data import (
    DATASETS,
    Batch,
    ImageSet,
    UploadError,
    class_histogram,
    image_from_bytes,
    load_dataset,
    sample_client_batches,
    select_batch,
    split_clients,
    to_model_input,
)

# --- bundled sets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "part", "count", "side"),
    [
        ("mnist", "test", 500, 28),
        ("mnist", "train", 5000, 28),
        ("fashion_mnist", "test", 500, 28),
        ("fashion_mnist", "train", 5000, 28),
        ("lfw_faces", "test", 100, 25),
    ],
)
def test_bundled_sets_have_right_shapes_ranges_and_labels(name: str, part: str, count: int, side: int) -> None:
    data = load_dataset(name, part)
    assert isinstance(data, ImageSet) and data.name == name and len(data) == count
    assert data.images.shape == (count, 1, side, side) and data.images.dtype == torch.float32
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    assert float(data.images.max()) > 0.9  # not blank
    assert data.labels.dtype == torch.int64 and data.num_classes == 10
    assert torch.equal(torch.bincount(data.labels, minlength=10), torch.full((10,), count // 10))
    assert data.source == f"bundled assets/{name}/{part}.npz"


def test_bundled_sets_load_from_any_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert len(load_dataset("mnist")) == 500


def test_class_names_and_short_repr() -> None:
    assert load_dataset("mnist").classes == tuple("0123456789")
    assert load_dataset("fashion_mnist").classes[0] == "T-shirt/top"
    assert load_dataset("lfw_faces").classes[3] == "slot 3"
    text = repr(load_dataset("mnist"))
    assert "500 images 1x28x28" in text and "tensor" not in text and len(text) < 200


def test_each_load_returns_fresh_tensors() -> None:
    first = load_dataset("mnist")
    first.images.zero_()
    assert float(load_dataset("mnist").images.max()) > 0.9


def test_load_dataset_refuses_unknown_and_unbundled_choices() -> None:
    assert DATASETS == ("mnist", "fashion_mnist", "lfw_faces", "cifar10")
    with pytest.raises(ValueError, match="mnist, fashion_mnist, lfw_faces, cifar10"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="root="):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="test"):
        load_dataset("lfw_faces", "train")
    with pytest.raises(ValueError, match="bundled"):
        load_dataset("lfw_faces", root="/nowhere")


# --- torchvision folders, faked ------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an unsigned-byte IDX file (magic 0x0000 08 NDIM, big-endian sizes), as MNIST ships it gunzipped."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist_root(root: Path, folder: str, n: int = 20) -> np.ndarray:
    """Write a torchvision MNIST-style raw folder of ``n`` images per split; return the test images."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    test_images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    for prefix, images in (("train", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)), ("t10k", test_images)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return test_images


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_idx_folder_loads(tmp_path: Path, name: str, folder: str) -> None:
    test_images = fake_mnist_root(tmp_path, folder)
    data = load_dataset(name, "test", root=tmp_path)
    assert data.images.shape == (20, 1, 28, 28)
    assert torch.equal((data.images[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(test_images))
    assert torch.equal(data.labels, torch.arange(20) % 10)
    assert data.source == f"torchvision {folder} at {tmp_path}"
    assert len(load_dataset(name, "train", root=str(tmp_path))) == 20


def test_missing_torchvision_folder_names_root_and_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mnist", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "MNIST/raw" in message and "t10k-images-idx3-ubyte" in message
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_dataset("cifar10", root=tmp_path)


def fake_cifar_root(root: Path, n: int = 6) -> np.ndarray:
    """Write a tiny cifar-10-batches-py folder (md5s differ from the real one); return test images (N, 3, 32, 32)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    test_images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = test_images if name == "test_batch" else rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        batch = {"data": images.reshape(n, -1), "labels": [i % 10 for i in range(n)], "batch_label": name}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return test_images


def test_cifar_folder_failing_torchvision_md5_is_read_directly_and_says_so(tmp_path: Path) -> None:
    test_images = fake_cifar_root(tmp_path)
    data = load_dataset("cifar10", "test", root=tmp_path)
    assert data.images.shape == (6, 3, 32, 32)
    assert torch.equal((data.images * 255).round().to(torch.uint8), torch.from_numpy(test_images))
    assert torch.equal(data.labels, torch.arange(6))
    assert data.classes[0] == "airplane" and "read directly" in data.source and "md5" in data.source
    assert len(load_dataset("cifar10", "train", root=tmp_path)) == 30


# --- model input ---------------------------------------------------------------------------------------


def test_to_model_input_converts_channels_and_size() -> None:
    faces = load_dataset("lfw_faces").images[:4]  # (4, 1, 25, 25)
    rgb = to_model_input(faces, channels=3, size=32)
    assert rgb.shape == (4, 3, 32, 32) and 0 <= float(rgb.min()) and float(rgb.max()) <= 1
    assert torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 1], rgb[:, 2])
    assert to_model_input(faces, channels=1, size=28).shape == (4, 1, 28, 28)
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 1.0
    assert torch.allclose(to_model_input(red, channels=1, size=8), torch.full((1, 1, 8, 8), 0.299))
    digits = load_dataset("mnist").images[:2]
    assert torch.equal(to_model_input(digits, 1, 28), digits)


# --- uploads -------------------------------------------------------------------------------------------


def encode(picture: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt)
    return buffer.getvalue()


def white_centre(width: int = 60, height: int = 30) -> Image.Image:
    """Black margins left and right, a white centred square: centre-cropping leaves only white."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    left = (width - height) // 2
    pixels[:, left : left + height] = 255
    return Image.fromarray(pixels)


def test_png_upload_is_centre_cropped_and_resized() -> None:
    image = image_from_bytes(encode(white_centre(), "PNG"), channels=1, size=28)
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert float(image.min()) > 0.99  # the black margins were cropped away
    assert image_from_bytes(encode(white_centre(), "PNG"), channels=3, size=32).shape == (3, 32, 32)


def test_jpeg_upload_is_accepted_and_converted() -> None:
    image = image_from_bytes(encode(white_centre(80, 40), "JPEG"), channels=3, size=32)
    assert image.shape == (3, 32, 32) and 0 <= float(image.min()) and float(image.max()) <= 1
    assert float(image.mean()) > 0.95


def test_transparent_png_is_composited_over_white() -> None:
    image = image_from_bytes(encode(Image.new("RGBA", (10, 10), (0, 0, 0, 0)), "PNG"), channels=1, size=10)
    assert torch.allclose(image, torch.ones(1, 10, 10))


def test_text_upload_is_rejected_saying_what_it_was() -> None:
    with pytest.raises(UploadError, match="Only PNG or JPEG.*text.*hello there") as err:
        image_from_bytes(b"hello there, not a picture", channels=1, size=28)
    assert isinstance(err.value, ValueError)
    with pytest.raises(UploadError, match="GIF"):
        image_from_bytes(encode(Image.new("L", (4, 4)), "GIF"), channels=1, size=28)
    with pytest.raises(UploadError, match="empty"):
        image_from_bytes(b"", channels=1, size=28)


def test_oversized_upload_is_rejected_with_size_and_cap() -> None:
    big = b"\x89PNG\r\n\x1a\n" + bytes(6 * 2**20)
    with pytest.raises(UploadError, match=r"6\.0 MB; the limit is 5\.0 MB"):
        image_from_bytes(big, channels=1, size=28)


def test_corrupt_png_is_rejected() -> None:
    data = encode(white_centre(), "PNG")
    with pytest.raises(UploadError, match="PNG but could not be decoded"):
        image_from_bytes(data[: len(data) // 2], channels=1, size=28)
    with pytest.raises(UploadError, match="could not be decoded"):
        image_from_bytes(data[:8] + b"garbage" * 10, channels=1, size=28)


# --- batches -------------------------------------------------------------------------------------------


def test_select_batch_by_seed_is_reproducible() -> None:
    data = load_dataset("mnist")
    first, again, other = (select_batch(data, 8, seed=s) for s in (3, 3, 4))
    assert isinstance(first, Batch) and first.images.shape == (8, 1, 28, 28)
    assert torch.equal(first.indices, again.indices) and not torch.equal(first.indices, other.indices)
    assert len(set(first.indices.tolist())) == 8
    assert torch.equal(first.images, data.images[first.indices])
    assert torch.equal(first.labels, data.labels[first.indices])


def test_select_batch_by_indices_is_exact_and_checked() -> None:
    data = load_dataset("fashion_mnist")
    batch = select_batch(data, 3, indices=[7, 0, 499])
    assert batch.indices.tolist() == [7, 0, 499]
    assert torch.equal(batch.images, data.images[[7, 0, 499]])
    with pytest.raises(ValueError, match="500"):
        select_batch(data, 2, indices=[1, 500])
    with pytest.raises(ValueError, match="2 indices for a batch of size 3"):
        select_batch(data, 3, indices=[1, 2])


def test_select_batch_by_classes_and_unique_labels() -> None:
    data = load_dataset("mnist")
    batch = select_batch(data, 20, seed=1, classes=[3, 5])
    assert set(batch.labels.tolist()) <= {3, 5}
    unique = select_batch(data, 3, seed=2, classes=[1, 4, 7, 9], unique_labels=True)
    assert len(set(unique.labels.tolist())) == 3 and set(unique.labels.tolist()) <= {1, 4, 7, 9}
    everything = select_batch(data, 10, seed=0, unique_labels=True)
    assert sorted(everything.labels.tolist()) == list(range(10))
    with pytest.raises(ValueError, match="3 distinct labels"):
        select_batch(data, 3, classes=[1, 2], unique_labels=True)
    with pytest.raises(ValueError, match="0..9"):
        select_batch(data, 1, classes=[10])


def test_select_batch_larger_than_the_set_names_both_numbers() -> None:
    with pytest.raises(ValueError, match=r"101.*100"):
        select_batch(load_dataset("lfw_faces"), 101)


# --- clients -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["iid", "dirichlet", "shards"])
def test_split_clients_is_a_partition_with_no_empty_client(method: str) -> None:
    labels = load_dataset("mnist", "train").labels
    parts = split_clients(labels, 10, method=method, alpha=0.1, seed=0)
    assert len(parts) == 10 and all(len(p) > 0 and p.dtype == torch.int64 for p in parts)
    joined = torch.cat(parts)
    assert len(joined) == len(set(joined.tolist())) == len(labels)  # disjoint, and every index used
    assert torch.equal(torch.cat(split_clients(labels, 10, method=method, alpha=0.1, seed=0)), joined)
    hist = class_histogram(labels, parts, 10)
    assert hist.shape == (10, 10) and hist.dtype == torch.int64
    assert torch.equal(hist.sum(1), torch.tensor([len(p) for p in parts]))
    assert torch.equal(hist.sum(0), torch.bincount(labels, minlength=10))


def test_shards_give_each_client_few_classes() -> None:
    labels = load_dataset("mnist", "train").labels
    hist = class_histogram(labels, split_clients(labels, 20, "shards", shards_per_client=2), 10)
    assert int((hist > 0).sum(1).max()) <= 4  # 2 shards of 125 sorted labels span at most 2 classes each


def mean_label_entropy(hist: torch.Tensor) -> float:
    """Mean over clients of the entropy (nats) of the client's label distribution."""
    p = hist.double() / hist.sum(1, keepdim=True)
    return float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())


def test_dirichlet_small_alpha_is_more_skewed_than_large_alpha() -> None:
    labels = load_dataset("mnist", "train").labels
    skewed = class_histogram(labels, split_clients(labels, 10, "dirichlet", alpha=0.05, seed=0), 10)
    even = class_histogram(labels, split_clients(labels, 10, "dirichlet", alpha=100.0, seed=0), 10)
    assert mean_label_entropy(skewed) < 1.0 < 2.2 < mean_label_entropy(even)  # log(10) = 2.30 is uniform


def test_split_clients_refuses_impossible_requests() -> None:
    with pytest.raises(ValueError, match="11 clients.*10 examples"):
        split_clients(torch.arange(10) % 3, 11)
    with pytest.raises(ValueError, match="shards"):
        split_clients(torch.arange(10) % 3, 4, "shards", shards_per_client=3)
    with pytest.raises(ValueError, match="iid, dirichlet, shards"):
        split_clients(torch.arange(10), 2, "pathological")  # type: ignore[arg-type]


def test_sample_client_batches_draw_from_each_clients_own_part() -> None:
    data = load_dataset("mnist")
    batches = sample_client_batches(data, num_clients=5, batch_size=4, method="dirichlet", alpha=1.0, seed=0)
    assert len(batches) == 5 and all(b.images.shape == (4, 1, 28, 28) for b in batches)
    rows = torch.cat([b.indices for b in batches])
    assert len(set(rows.tolist())) == 20  # clients hold disjoint parts
    assert all(torch.equal(b.labels, data.labels[b.indices]) for b in batches)
    again = sample_client_batches(data, num_clients=5, batch_size=4, method="dirichlet", alpha=1.0, seed=0)
    assert torch.equal(torch.cat([b.indices for b in again]), rows)
    only = sample_client_batches(data, 2, 3, classes=[0, 1])
    assert set(torch.cat([b.labels for b in only]).tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="fewer than batch_size=200"):
        sample_client_batches(data, num_clients=5, batch_size=200)
