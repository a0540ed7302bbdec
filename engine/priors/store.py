"""A trained prior on disk: the VAE's weights, where each class lives in latent space, and its model card.

File format ``gil-vae/1`` (a plain dict of tensors, numbers and strings, read with ``weights_only=True``)::

    {"format": "gil-vae/1", "name": "mnist", "config": {"channels", "size", "latent", "hidden"},
     "state_dict": {...}, "class_means": (K, d), "class_stds": (K, d), "card": {...}}

Made by ``scripts/train_priors.py``; see ``assets/priors/<name>.md`` for each shipped prior's card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .vae import ConvVAE

__all__ = ["FORMAT", "PRIORS", "Prior", "PriorError", "prior_path", "load_prior", "save_prior"]

FORMAT = "gil-vae/1"
PRIORS: tuple[str, ...] = ("mnist", "fashion_mnist")  # the priors shipped in assets/priors/
PRIORS_DIR = Path(__file__).resolve().parents[2] / "assets" / "priors"
CONFIG_KEYS = ("channels", "size", "latent", "hidden")


class PriorError(ValueError):
    """A prior file that is missing, unreadable or not what it claims to be."""


@dataclass(frozen=True, eq=False)
class Prior:
    """A trained VAE (eval mode, frozen) with the latent mean and spread of each class of its training set."""

    name: str  # the data set it was trained on: "mnist" or "fashion_mnist"
    vae: ConvVAE  # eval mode, requires_grad False
    class_means: torch.Tensor  # (K, d): mean of the encoder's mu over the training images of each class
    class_stds: torch.Tensor  # (K, d): their standard deviation per latent dimension
    card: dict = field(repr=False)  # the model card's numbers (epochs, seconds, held-out -ELBO, PSNR, command...)

    @property
    def num_classes(self) -> int:
        """K, the number of classes with latent statistics."""
        return int(self.class_means.shape[0])

    def __repr__(self) -> str:
        c, s, d = self.vae.channels, self.vae.size, self.vae.latent
        text = f"Prior({self.name!r}: a VAE over {c}x{s}x{s} images with a {d}-dim latent, {self.num_classes} classes"
        if "epochs" in self.card and "train_images" in self.card:
            text += f"; trained {self.card['epochs']} epochs on {self.card['train_images']} {self.name} train images"
        if "heldout_psnr_db" in self.card:
            text += f"; reconstructs held-out images at {self.card['heldout_psnr_db']:.1f} dB"
        return text + ")"


def prior_path(name: str, root: Path | None = None) -> Path:
    """The weights file of prior ``name``: ``<root>/<name>.pt`` (default root: ``assets/priors``)."""
    return Path(PRIORS_DIR if root is None else root) / f"{name}.pt"


def save_prior(
    path: Path | str,
    vae: ConvVAE,
    class_means: torch.Tensor,
    class_stds: torch.Tensor,
    card: dict,
    name: str,
) -> None:
    """Write ``vae`` and its class statistics in the ``gil-vae/1`` format that ``load_prior`` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": FORMAT,
        "name": name,
        "config": vae.config(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in vae.state_dict().items()},
        "class_means": class_means.detach().cpu().float().clone(),
        "class_stds": class_stds.detach().cpu().float().clone(),
        "card": dict(card),
    }
    torch.save(blob, path)


def load_prior(name: str, root: Path | None = None, device: str | torch.device = "cpu") -> Prior:
    """Load shipped prior ``name`` (see ``PRIORS``); ``PriorError`` saying what is wrong otherwise."""
    if name not in PRIORS:
        raise PriorError(f"unknown prior {name!r}; known priors: {', '.join(PRIORS)}")
    path = prior_path(name, root)
    blob = _read(path, name)
    vae = _build_vae(path, blob)
    means, stds = (_class_stat(path, blob, key, vae.latent) for key in ("class_means", "class_stds"))
    if means.shape != stds.shape:
        raise PriorError(f"{path}: class_means {tuple(means.shape)} and class_stds {tuple(stds.shape)} differ")
    vae.to(device).eval().requires_grad_(False)
    card = blob.get("card")
    card = dict(card) if isinstance(card, dict) else {}
    return Prior(str(blob.get("name", name)), vae, means.to(device), stds.to(device), card)


def _read(path: Path, name: str) -> dict:
    """The dict stored in ``path``, checked for the format marker."""
    if not path.is_file():
        raise PriorError(
            f"prior file {path} is missing; make it with `python scripts/train_priors.py --data {name}`"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types on a bad file (RuntimeError, IndexError, ...)
        raise PriorError(f"{path} is not a readable torch file (corrupt or truncated?): {error}") from error
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise PriorError(f"{path} is not a {FORMAT} prior (format marker: {found!r})")
    return blob


def _build_vae(path: Path, blob: dict) -> ConvVAE:
    """A ConvVAE built from the stored config with the stored weights, checked tensor by tensor."""
    config, state = blob.get("config"), blob.get("state_dict")
    if not isinstance(config, dict) or sorted(config) != sorted(CONFIG_KEYS):
        raise PriorError(f"{path}: config must have the keys {', '.join(CONFIG_KEYS)}, got {config!r}")
    if not isinstance(state, dict):
        raise PriorError(f"{path}: no state_dict in the file")
    try:
        vae = ConvVAE(**{k: int(config[k]) for k in CONFIG_KEYS})
    except (TypeError, ValueError) as error:
        raise PriorError(f"{path}: config {config!r} does not build a ConvVAE: {error}") from error
    load_checked(path, vae, state, config)
    return vae


def load_checked(path: Path, module: torch.nn.Module, state: dict, config: dict) -> None:
    """Load ``state`` into ``module`` after checking it names the same tensors with the same shapes;
    ``PriorError`` naming the first that differs otherwise."""
    expected = module.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise PriorError(f"{path}: state_dict does not match the config: missing {missing}, unexpected {extra}")
    for key, tensor in expected.items():
        if not isinstance(state[key], torch.Tensor) or state[key].shape != tensor.shape:
            got = tuple(state[key].shape) if isinstance(state[key], torch.Tensor) else type(state[key]).__name__
            raise PriorError(
                f"{path}: tensor {key!r} has shape {got}, but the stored config {config} needs {tuple(tensor.shape)}"
            )
    module.load_state_dict(state)


def _class_stat(path: Path, blob: dict, key: str, latent: int) -> torch.Tensor:
    """``class_means`` or ``class_stds``: a float tensor (K, latent) with K >= 1."""
    value = blob.get(key)
    if not isinstance(value, torch.Tensor) or value.ndim != 2 or value.shape[1] != latent or value.shape[0] < 1:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise PriorError(f"{path}: {key} must be a tensor (K, {latent}) (K classes x latent size), got {got}")
    return value.float()
