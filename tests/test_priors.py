"""Tests of engine.priors: the shipped VAE priors, their file format and its errors, nearest training images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.data import load_dataset
from engine.metrics import psnr
from engine.priors import (
    PRIORS,
    ConvVAE,
    Prior,
    PriorError,
    load_prior,
    nearest_training_images,
    prior_path,
    save_prior,
)

# --- the shipped priors --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_prior() -> Prior:
    return load_prior("mnist")


@pytest.fixture(scope="module")
def fashion_prior() -> Prior:
    return load_prior("fashion_mnist")


@torch.no_grad()
def reconstruction_psnr(prior: Prior, images: torch.Tensor) -> float:
    """Mean PSNR (dB) of D(mu(x)) against x."""
    return float(psnr(prior.vae.reconstruct(images), images).mean())


def test_shipped_priors_exist_small_and_frozen(mnist_prior: Prior) -> None:
    for name in PRIORS:
        assert prior_path(name).is_file() and prior_path(name).stat().st_size <= 10_000_000
        assert prior_path(name).with_suffix(".md").is_file()  # the model card
    assert mnist_prior.name == "mnist" and not mnist_prior.vae.training
    assert not any(p.requires_grad for p in mnist_prior.vae.parameters())
    assert mnist_prior.class_means.shape == mnist_prior.class_stds.shape == (10, mnist_prior.vae.latent)
    assert (mnist_prior.class_stds > 0).all()
    for key in ("epochs", "train_images", "seconds", "heldout_neg_elbo_nats", "heldout_psnr_db", "heldout_mse"):
        assert key in mnist_prior.card
    assert "mnist" in repr(mnist_prior) and "dB" in repr(mnist_prior)


def test_mnist_prior_reconstructs_held_out_digits(mnist_prior: Prior) -> None:
    # The bundled test digits were never seen in training (the prior fits train rows only). Measured: 21.5 dB on
    # these 200 (21.2 dB on the 9177 held-out train rows, the card's figure); 18 dB leaves margin for a retrain.
    digits = load_dataset("mnist", "test").images[:200]
    assert reconstruction_psnr(mnist_prior, digits) > 18.0


def test_class_means_decode_to_their_class(mnist_prior: Prior) -> None:
    # Each class mean decodes to an image nearer (in pixels) to that class's training images than to the others'.
    train = load_dataset("mnist", "train")
    with torch.no_grad():
        typical = mnist_prior.vae.decode(mnist_prior.class_means)  # (10, 1, 28, 28)
    index, _ = nearest_training_images(typical, train.images)
    assert (train.labels[index] == torch.arange(10)).sum() >= 8


def test_wrong_prior_reconstructs_worse(mnist_prior: Prior, fashion_prior: Prior) -> None:
    # The lesson of the wrong prior: clothes through the digit VAE come out as digit-like blobs.
    # Measured on these 200: 20.3 dB through the Fashion prior, 10.7 dB through the MNIST prior.
    clothes = load_dataset("fashion_mnist", "test").images[:200]
    right, wrong = reconstruction_psnr(fashion_prior, clothes), reconstruction_psnr(mnist_prior, clothes)
    assert right > wrong + 3.0


# --- the file format -----------------------------------------------------------------------------------


def tiny_vae(seed: int = 0) -> ConvVAE:
    torch.manual_seed(seed)
    return ConvVAE(channels=1, size=28, latent=4, hidden=16)


def save_tiny(root: Path, name: str = "mnist", **changes) -> Path:
    """A tiny prior saved as ``root/<name>.pt``; ``changes`` replace entries of the stored dict."""
    vae = tiny_vae()
    path = prior_path(name, root)
    save_prior(path, vae, torch.zeros(10, 4), torch.ones(10, 4), {"epochs": 1, "train_images": 3}, name)
    if changes:
        blob = torch.load(path, weights_only=True)
        torch.save({**blob, **changes}, path)
    return path


def test_save_load_round_trip(tmp_path: Path) -> None:
    vae, means, stds = tiny_vae(), torch.randn(10, 4), torch.rand(10, 4) + 0.1
    card = {"epochs": 3, "train_images": 100, "heldout_psnr_db": 12.5, "command": "python x.py"}
    save_prior(prior_path("fashion_mnist", tmp_path), vae, means, stds, card, "fashion_mnist")
    prior = load_prior("fashion_mnist", root=tmp_path)
    assert prior.name == "fashion_mnist" and prior.card == card and prior.vae.config() == vae.config()
    assert torch.equal(prior.class_means, means) and torch.equal(prior.class_stds, stds)
    for key, tensor in vae.state_dict().items():
        assert torch.equal(prior.vae.state_dict()[key], tensor)
    assert not prior.vae.training and not any(p.requires_grad for p in prior.vae.parameters())
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(prior.vae.reconstruct(x), vae.eval().reconstruct(x))


def test_unknown_name_lists_the_known() -> None:
    with pytest.raises(PriorError, match="known priors: mnist, fashion_mnist"):
        load_prior("cifar10")


def test_missing_file_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(PriorError, match=r"missing.*python scripts/train_priors.py --data mnist"):
        load_prior("mnist", root=tmp_path)


def test_text_file_is_not_a_torch_file(tmp_path: Path) -> None:
    prior_path("mnist", tmp_path).write_text("these are not weights\n")
    with pytest.raises(PriorError, match="not a readable torch file"):
        load_prior("mnist", root=tmp_path)


def test_truncated_file(tmp_path: Path) -> None:
    path = save_tiny(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PriorError, match="corrupt or truncated"):
        load_prior("mnist", root=tmp_path)


def test_wrong_format_marker(tmp_path: Path) -> None:
    save_tiny(tmp_path, format="something-else/9")
    with pytest.raises(PriorError, match="not a gil-vae/1 prior.*something-else/9"):
        load_prior("mnist", root=tmp_path)


def test_state_dict_shape_mismatch_names_the_tensor(tmp_path: Path) -> None:
    state = dict(tiny_vae().state_dict())
    state["decoder.0.weight"] = torch.zeros(16, 5)  # config says latent 4: (16, 4)
    save_tiny(tmp_path, state_dict=state)
    with pytest.raises(PriorError, match=r"'decoder.0.weight' has shape \(16, 5\).*needs \(16, 4\)"):
        load_prior("mnist", root=tmp_path)


def test_class_statistics_of_the_wrong_shape(tmp_path: Path) -> None:
    save_tiny(tmp_path, class_means=torch.zeros(10, 7))
    with pytest.raises(PriorError, match=r"class_means must be a tensor \(K, 4\).*got \(10, 7\)"):
        load_prior("mnist", root=tmp_path)


# --- nearest training images ---------------------------------------------------------------------------


def test_nearest_finds_the_query_in_the_reference() -> None:
    reference = load_dataset("mnist", "train").images[:700]  # (700, 1, 28, 28)
    wanted = torch.tensor([0, 5, 333, 699])
    index, distance = nearest_training_images(reference[wanted], reference, chunk=256)  # 3 chunks
    assert torch.equal(index, wanted)
    assert distance.shape == (4,) and distance.abs().max() < 1e-6


def test_nearest_distance_is_the_mean_squared_difference() -> None:
    generator = torch.Generator().manual_seed(0)
    images, reference = torch.rand(3, 1, 4, 4, generator=generator), torch.rand(5, 1, 4, 4, generator=generator)
    oracle = (images[:, None] - reference[None]).pow(2).flatten(2).mean(2)  # (3, 5)
    index, distance = nearest_training_images(images, reference, chunk=2)
    assert torch.equal(index, oracle.argmin(1))
    assert torch.allclose(distance, oracle.min(1).values, atol=1e-6)
