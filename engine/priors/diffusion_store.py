"""A trained diffusion prior on disk: the denoiser's weights (the EMA copy), its schedule, and its model card.

File format ``gil-ddpm/1`` (a plain dict of tensors, numbers and strings, read with ``weights_only=True``)::

    {"format": "gil-ddpm/1", "name": "mnist",
     "config": {"channels", "size", "base", "patch", "timesteps", "beta_start", "beta_end"},
     "state_dict": {...}, "card": {...}}

Stored as ``assets/priors/<name>_diffusion.pt`` beside the VAE's ``<name>.pt``; made by
``scripts/train_diffusion.py``; see ``assets/priors/<name>_diffusion.md`` for each shipped model's card.
The checks are the VAE store's (``store.py``): missing, unreadable, another format, another data set, or
weights that do not fit the stored config each give one ``PriorError`` line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .diffusion import Diffusion, UNet
from .store import PRIORS, PRIORS_DIR, PriorError, load_checked

__all__ = ["DIFFUSION_FORMAT", "DiffusionPrior", "diffusion_path", "load_diffusion", "save_diffusion"]

DIFFUSION_FORMAT = "gil-ddpm/1"
UNET_KEYS = ("channels", "size", "base", "patch")
SCHEDULE_KEYS = ("timesteps", "beta_start", "beta_end")


@dataclass(frozen=True, eq=False)
class DiffusionPrior:
    """A trained denoiser (eval mode, frozen) with its noise schedule and card."""

    name: str  # the data set it was trained on: "mnist" or "fashion_mnist"
    model: Diffusion  # eval mode, requires_grad False
    card: dict = field(repr=False)

    def __repr__(self) -> str:
        m = self.model
        text = (f"DiffusionPrior({self.name!r}: a U-Net denoiser over {m.channels}x{m.size}x{m.size} images, "
                f"{m.timesteps} noise steps")
        if "steps" in self.card and "train_images" in self.card:
            text += f"; trained {self.card['steps']} steps on {self.card['train_images']} {self.name} train images"
        if "heldout_psnr_t200" in self.card:
            text += f"; redraws held-out images noised to t=200 at {self.card['heldout_psnr_t200']:.1f} dB"
        return text + ")"


def diffusion_path(name: str, root: Path | None = None) -> Path:
    """The weights file of diffusion prior ``name``: ``<root>/<name>_diffusion.pt`` (default ``assets/priors``)."""
    return Path(PRIORS_DIR if root is None else root) / f"{name}_diffusion.pt"


def save_diffusion(path: Path | str, model: Diffusion, card: dict, name: str) -> None:
    """Write ``model`` in the ``gil-ddpm/1`` format that ``load_diffusion`` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": DIFFUSION_FORMAT,
        "name": name,
        "config": model.config(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.unet.state_dict().items()},
        "card": dict(card),
    }
    torch.save(blob, path)


def load_diffusion(name: str, root: Path | None = None, device: str | torch.device = "cpu") -> DiffusionPrior:
    """Load shipped diffusion prior ``name`` (see ``PRIORS``); ``PriorError`` saying what is wrong otherwise."""
    if name not in PRIORS:
        raise PriorError(f"unknown prior {name!r}; known priors: {', '.join(PRIORS)}")
    path = diffusion_path(name, root)
    if not path.is_file():
        raise PriorError(
            f"diffusion prior file {path} is missing; make it with `python scripts/train_diffusion.py --data {name}`"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types on a bad file (RuntimeError, EOFError, ...)
        raise PriorError(f"{path} is not a readable torch file (corrupt or truncated?): {error}") from error
    if not isinstance(blob, dict) or blob.get("format") != DIFFUSION_FORMAT:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise PriorError(f"{path} is not a {DIFFUSION_FORMAT} diffusion prior (format marker: {found!r})")
    if blob.get("name") != name:
        raise PriorError(f"{path} holds a diffusion prior for {blob.get('name')!r}, not {name!r}")
    model = _build(path, blob)
    model.to(device).eval().requires_grad_(False)
    card = blob.get("card")
    return DiffusionPrior(name, model, dict(card) if isinstance(card, dict) else {})


def _build(path: Path, blob: dict) -> Diffusion:
    """A Diffusion built from the stored config with the stored weights, checked tensor by tensor."""
    config, state = blob.get("config"), blob.get("state_dict")
    if not isinstance(config, dict) or sorted(config) != sorted(UNET_KEYS + SCHEDULE_KEYS):
        raise PriorError(f"{path}: config must have the keys {', '.join(UNET_KEYS + SCHEDULE_KEYS)}, got {config!r}")
    if not isinstance(state, dict):
        raise PriorError(f"{path}: no state_dict in the file")
    try:
        unet = UNet(**{k: int(config[k]) for k in UNET_KEYS})
        model = Diffusion(unet, int(config["timesteps"]), float(config["beta_start"]), float(config["beta_end"]))
    except (TypeError, ValueError, RuntimeError) as error:
        raise PriorError(f"{path}: config {config!r} does not build a denoiser: {error}") from error
    load_checked(path, unet, state, config)
    return model
