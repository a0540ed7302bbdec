"""Gradient distances: how far the dummy update is from the leaked one.

Each distance takes the dummy update and the leaked update as {name: tensor} dicts in the same
order and returns a scalar tensor; look one up by name with `create_distance`. Adding a distance
means adding a function and a line in `DISTANCES`, nothing else.
"""

from __future__ import annotations

from typing import Callable

import torch

Params = dict[str, torch.Tensor]
Distance = Callable[[Params, Params], torch.Tensor]

__all__ = ["DISTANCES", "create_distance", "squared_l2", "cosine", "cosine_rows", "layer_shares"]


def squared_l2(dummy: Params, leaked: Params) -> torch.Tensor:
    """DLG (Zhu et al. 2019), Eq. (4): || grad W' - grad W ||^2 summed over every layer."""
    return sum(((dummy[name] - leaked[name]) ** 2).sum() for name in leaked)


def cosine(dummy: Params, leaked: Params) -> torch.Tensor:
    """Inverting Gradients (Geiping et al. 2020), Eq. (4): 1 - <g', g> / (||g'|| ||g||) over the
    whole update as one vector. Blind to the update's scale, so a learning rate or a batch size
    the attacker gets wrong does not matter."""
    dot = sum((dummy[name] * leaked[name]).sum() for name in leaked)
    dummy_norm = sum((dummy[name] ** 2).sum() for name in leaked).sqrt()
    leaked_norm = sum((leaked[name] ** 2).sum() for name in leaked).sqrt()
    return 1 - dot / (dummy_norm * leaked_norm + 1e-12)


def cosine_rows(dummy: Params, leaked: Params) -> torch.Tensor:
    """The cosine distance plus the mean cosine distance of each row of the classifier's weight
    gradient. Row c of dL/dW is (1/n) sum_i (softmax_ic - [y_i = c]) h_i^T: for an untrained net
    nearly minus the summed features of class c's images, so the row terms split a batch into one
    sub-problem per class (../shared/FINDINGS.md: ~1 dB for the VAE prior at batch 16-32)."""
    weight = list(leaked)[-2]  # the classifier's (K, D) weight, before its bias
    rows = 1 - torch.nn.functional.cosine_similarity(dummy[weight], leaked[weight], dim=1, eps=1e-12)  # (K,)
    return cosine(dummy, leaked) + rows.mean()


def layer_shares(dummy: Params, leaked: Params) -> dict[str, float]:
    """Each layer's share of the squared L2 distance, for display (sums to 1)."""
    parts = {name: float(((dummy[name] - leaked[name]) ** 2).sum()) for name in leaked}
    total = sum(parts.values()) or 1.0
    return {name: part / total for name, part in parts.items()}


DISTANCES: dict[str, Distance] = {
    "l2": squared_l2,
    "cosine": cosine,
    "cosine_rows": cosine_rows,
}


def create_distance(name: str) -> Distance:
    """The gradient distance called `name`."""
    if name not in DISTANCES:
        raise ValueError(f"unknown gradient distance {name!r}; known: {', '.join(DISTANCES)}")
    return DISTANCES[name]
