"""The Poisoned-clients page's small federation, shared with scripts/precompute_poisoned.py. Not a page."""

from __future__ import annotations

import hashlib
import json

from engine.config import Config
from pages.common import encode

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
    """The recording's key for a run config: a hash of the settings that differ from the defaults (the
    page link's), so a setting new to the engine (at its default) leaves every recording's key as it was."""
    return hashlib.sha1(json.dumps(encode(config), sort_keys=True).encode()).hexdigest()[:12]
