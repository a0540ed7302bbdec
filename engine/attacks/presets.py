"""Paper attacks as presets over the shared parts of `GradientInversion`.

    DLG  (Zhu, Liu & Han 2019):   L-BFGS + squared L2 gradient distance, labels optimised jointly
    iDLG (Zhao, Mopuri & Bilen 2020): DLG with the label read off the gradient first
    IG   (Geiping et al. 2020):    signed Adam + cosine distance + total variation + box, lr steps
    vae_prior:                     a MAP estimate in a VAE's latent space (prior.py), not a pixel preset
    diffusion_prior:               guided denoising under a diffusion model (diffusion.py), not a pixel preset

Our DLG keeps the paper's objective and optimiser but takes the recipe that measured fastest and
most reliable on these machines (../shared/FINDINGS.md, re-checked by bench/dlg_speed.py): grey
start, compact L-BFGS with unit steps and no stopping tolerance, a sigmoid change of variables
for the first evaluations of a batch, labels recovered from the gradient with the next most likely
multisets tried as restarts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Union

from ..labels import Auxiliary
from ..priors import DiffusionPrior, Prior, load_diffusion, load_prior
from .diffusion import DiffusionPriorAttack, DiffusionSettings
from .inversion import GradientInversion, Settings
from .prior import PriorSettings, VAEPriorAttack

__all__ = ["PRESETS", "ATTACKS", "Attack", "create_attack", "dlg", "idlg", "inverting_gradients"]

Attack = Union[GradientInversion, VAEPriorAttack, DiffusionPriorAttack]  # all: .steps(leak, true_labels), .run(...), .settings


def dlg(**overrides) -> Settings:
    """Deep Leakage from Gradients, Algorithm 1: match || grad W' - grad W ||^2 with L-BFGS."""
    base = Settings(optimiser="lbfgs", distance="l2", lr=1.0, init="grey", sigmoid_steps=800, tolerance=1e-9)
    return replace(base, **overrides)


def idlg(**overrides) -> Settings:
    """iDLG: the same optimisation, with the label(s) read off the last layer's gradient."""
    return dlg(**{"labels": "recovered", **overrides})


def inverting_gradients(**overrides) -> Settings:
    """Inverting Gradients, Eq. (4): cosine distance + alpha TV(x), signed Adam, x in [0, 1],
    the learning rate divided by 10 at 3/8, 5/8 and 7/8 of the run."""
    base = Settings(
        optimiser="adam", distance="cosine", regularisers=(("tv", 1e-4),), lr=0.1, signed=True, box=True,
        schedule=(3 / 8, 5 / 8, 7 / 8), init="uniform", iterations=1000,
    )
    return replace(base, **overrides)


PRESETS: dict[str, Callable[..., Settings]] = {"dlg": dlg, "idlg": idlg, "ig": inverting_gradients}
ATTACKS = (*PRESETS, "vae_prior", "diffusion_prior")  # every name create_attack knows


def create_attack(
    name: str, prior: Prior | str | None = None, auxiliary: Auxiliary | None = None,
    diffusion: DiffusionPrior | None = None, **overrides
) -> Attack:
    """The attack called `name`, with any settings field overridden. `vae_prior` needs `prior`:
    a loaded `engine.priors.Prior` or the name of a shipped one; `diffusion_prior` too (its VAE stage),
    and its denoiser `diffusion` (loaded by the prior's name when not given). `auxiliary`: (images,
    labels) of the same kind the attacker holds, to read the batch's labels with (engine.labels, Eq. 5)."""
    if name == "diffusion_prior":
        if prior is None:
            raise ValueError("the diffusion_prior attack needs an image prior: prior='mnist' or 'fashion_mnist'")
        prior = load_prior(prior) if isinstance(prior, str) else prior
        diffusion = load_diffusion(prior.name) if diffusion is None else diffusion
        return DiffusionPriorAttack(DiffusionSettings(**overrides), diffusion, prior, auxiliary)
    if name == "vae_prior":
        if prior is None:
            raise ValueError("the vae_prior attack needs an image prior: prior='mnist' or 'fashion_mnist'")
        prior = load_prior(prior) if isinstance(prior, str) else prior
        return VAEPriorAttack(PriorSettings(**overrides), prior, auxiliary)
    if name not in PRESETS:
        raise ValueError(f"unknown attack {name!r}; known attacks: {', '.join(ATTACKS)}")
    return GradientInversion(PRESETS[name](**overrides), auxiliary)
