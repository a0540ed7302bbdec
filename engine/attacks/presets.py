"""Paper attacks as presets over the shared parts of `GradientInversion`.

    DLG  (Zhu, Liu & Han 2019):   L-BFGS + squared L2 gradient distance, labels optimised jointly
    iDLG (Zhao, Mopuri & Bilen 2020): DLG with the label read off the gradient first
    IG   (Geiping et al. 2020):    signed Adam + cosine distance + total variation + box, lr steps

Our DLG keeps the paper's objective and optimiser but takes the recipe that measured fastest and
most reliable on these machines (../shared/FINDINGS.md, re-checked by bench/dlg_speed.py): grey
start, compact L-BFGS with unit steps and no stopping tolerance, a sigmoid change of variables
for the first evaluations of a batch, labels recovered from the gradient with the next most likely
multisets tried as restarts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from .inversion import GradientInversion, Settings

__all__ = ["PRESETS", "create_attack", "dlg", "idlg", "inverting_gradients"]


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


def create_attack(name: str, **overrides) -> GradientInversion:
    """The attack called `name`, with any `Settings` field overridden."""
    if name not in PRESETS:
        raise ValueError(f"unknown attack {name!r}; known attacks: {', '.join(PRESETS)}")
    return GradientInversion(PRESETS[name](**overrides))
