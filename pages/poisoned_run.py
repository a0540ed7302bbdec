"""The Poisoned-clients page's small federation, shared with scripts/precompute_poisoned.py. Not a page."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from engine.config import Config, to_dict

SIZE = {"federation.clients": 15, "federation.fraction": 1.0, "federation.rounds": 4, "federation.local_epochs": 1}
PAGE_RUN = ["model.name=convnet", *(f"{k}={v}" for k, v in SIZE.items()), "federation.deadline=1e6",
            "federation.dropout=0.0", "defence.dp.noise_multiplier=0", "federation.keep_views=[]"]


def page_overrides(config: Config) -> list[str]:
    """The page's settings over the learner's: its small federation, Dirichlet 0.1 when non-IID, and for
    the backdoor a server that starts from a model pretrained on its public digits and attackers who
    wait one round (model replacement aims at a model that has learnt, Bagdasaryan et al. 2020)."""
    extra = ["data.alpha=0.1"] if config.data.split == "dirichlet" else []
    if config.federation.attack == "backdoor":
        extra += ["federation.pretrain=3", "federation.poison.start=2"]
    return PAGE_RUN + extra


def size_differs(config: Config) -> bool:
    """Whether the experiment's federation is not the page's size (the aggregators' rules depend on it)."""
    f = config.federation
    return (f.clients, f.fraction, f.rounds, f.local_epochs) != tuple(SIZE.values())


def key_of(config: Config) -> str:
    """The recording's key for a run config: a hash of the settings that differ from the defaults, so a
    setting new to the engine (at its default) leaves every recording's key as it was."""
    default = _flat(to_dict(Config()))
    changed = {k: v for k, v in _flat(to_dict(config)).items() if k not in default or v != default[k]}
    return hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:12]


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"federation": {"rounds": 4}} -> {"federation.rounds": 4}; tuples as lists, as JSON has them."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat
