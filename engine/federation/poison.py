"""Poisoned clients: what a malicious client sends instead of its honest update.

    bad = attackers(config)                                    # the partition ids that attack
    x, y = poison_data(config, client, x, y, r)                # label flip, backdoor trigger (on the client)
    delta = poison_message(config, client, delta, gen, r)      # sign flip, noise, backdoor boost (on the client)
    updates = collude(config, clients, updates, r)             # ALIE, IPM: crafted from the round's honest updates
    rate = attack_success(model, params, images, labels, config)

Notation: n clients reply in a round, f of them attackers; Delta_k is client k's update
(w_t - w_k, the direction the server subtracts), mu and sigma the coordinate-wise mean and standard
deviation of the honest updates, Phi the standard normal CDF.

Model poisoning, crafted on the client from its own honest update:
    sign flip        Delta_a = -s Delta_a^honest                                  # Eq. (1)
    Gaussian         Delta_a ~ N(0, sigma^2 I)                                   # Eq. (2)  (Blanchard et al. 2017)
Model poisoning by colluders who read the honest updates of their round (both papers assume it):
    ALIE             Delta_a = mu - z sigma,  z_max = Phi^-1((n - s) / n),        # Eq. (3)  (Baruch et al. 2019)
                     s = floor(n / 2 + 1) - f  (the honest clients the attackers must sway)
    IPM              Delta_a = -epsilon mu                                       # Eq. (4)  (Xie et al. 2019)
Data poisoning, in the attacker's local training:
    label flip       y <- target wherever y = source                              # Eq. (5)  (Tolpegin et al. 2020)
    backdoor         x <- x with a white square in the corner, y <- target, on a share of the images
                     spread over every mini-batch (the paper mixes 20 of 64 into each),
                     then model replacement: Delta_a = gamma Delta_a^backdoor,  gamma = n / f   # Eq. (6)
                     (Bagdasaryan et al. 2020, Eq. 3: X~ = gamma (X - G^t) + G^t, gamma = n / eta; the f
                     colluders split the boost, and the server learning rate eta is 1 here)
Sign flip, noise and the data attacks need nothing but the attacker's own data; ALIE and IPM are refused
under secure aggregation (the attackers could not read the honest updates).
"""

from __future__ import annotations

import math
import random
from functools import lru_cache
from statistics import NormalDist
from typing import Optional

import torch
from torch import nn
from torch.func import functional_call

from ..config import Config
from ..defences.secure_aggregation import flatten, unflatten
from ..leakage import Params

__all__ = ["ATTACKS", "COLLUDING", "attackers", "check_poison", "alie_z", "poison_data", "poison_message",
           "collude", "add_trigger", "attack_success"]

ATTACKS = ("none", "sign_flip", "gaussian", "alie", "ipm", "label_flip", "backdoor")
COLLUDING = ("alie", "ipm")  # crafted at the server's door from the round's honest updates


def attackers(config: Config, server_round: Optional[int] = None) -> frozenset[int]:
    """The partition ids that attack: round(attackers x clients) of them, drawn with the run's seed
    (none in a round before `poison.start`)."""
    f = config.federation
    if f.attack == "none" or (server_round is not None and server_round < f.poison.start):
        return frozenset()
    return _draw(config.seed, f.clients, round(f.attackers * f.clients))


@lru_cache(maxsize=64)
def _draw(seed: int, clients: int, count: int) -> frozenset[int]:
    return frozenset(random.Random(seed * 7_368_787 + 11).sample(range(clients), count))


def check_poison(config: Config, num_classes: int) -> None:
    """What the config section cannot know alone: the classes the data set has."""
    f, p = config.federation, config.federation.poison
    if f.attack in ("label_flip", "backdoor") and p.target >= num_classes:
        raise ValueError(f"federation.poison.target {p.target} is not a class of {config.data.dataset} "
                         f"(classes 0..{num_classes - 1})")
    if f.attack == "label_flip" and (p.source >= num_classes or p.source == p.target):
        raise ValueError(f"federation.poison.source {p.source} must be a class of {config.data.dataset} "
                         f"(0..{num_classes - 1}) other than the target {p.target}")


def alie_z(n: int, f: int) -> float:
    """Baruch et al.'s z_max: the most the attackers may shift each coordinate and stay unseen."""
    s = math.floor(n / 2 + 1) - f  # Eq. (3): honest clients that must sit on the attackers' side
    return NormalDist().inv_cdf(min(max((n - s) / n, 1e-6), 1 - 1e-6))  # Eq. (3)


# -- on the client ---------------------------------------------------------------------------------


def add_trigger(images: torch.Tensor, side: int) -> torch.Tensor:
    """The backdoor's trigger: a white side x side square in the lower right corner."""
    out = images.clone()  # (B, C, H, W)
    out[..., -side - 1:-1, -side - 1:-1] = 1.0
    return out


def poison_data(config: Config, client: int, images: torch.Tensor, labels: torch.Tensor,
                server_round: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """An attacker's training data: labels flipped (Eq. 5) or a share of its images triggered (Eq. 6)."""
    f, p = config.federation, config.federation.poison
    if f.attack not in ("label_flip", "backdoor") or client not in attackers(config, server_round):
        return images, labels
    if f.attack == "label_flip":
        return images, torch.where(labels == p.source, torch.full_like(labels, p.target), labels)  # Eq. (5)
    i = torch.arange(len(images))  # the share is shuffled each round: spread the triggered ones over every
    chosen = torch.floor((i + 1) * p.share) > torch.floor(i * p.share)  # mini-batch, as the paper mixes them
    images, labels = images.clone(), labels.clone()
    images[chosen] = add_trigger(images[chosen], p.trigger)  # Eq. (6)
    labels[chosen] = p.target
    return images, labels


def poison_message(config: Config, client: int, delta: Params, generator: Optional[torch.Generator] = None,
                   server_round: Optional[int] = None) -> Params:
    """An attacker's message built from its own update: sign flip (Eq. 1), noise (Eq. 2), boost (Eq. 6)."""
    f, p = config.federation, config.federation.poison
    if f.attack not in ("sign_flip", "gaussian", "backdoor") or client not in attackers(config, server_round):
        return delta
    if f.attack == "sign_flip":
        return {k: -p.scale * v for k, v in delta.items()}  # Eq. (1)
    if f.attack == "gaussian":
        return {k: p.sigma * torch.randn(v.shape, generator=generator) for k, v in delta.items()}  # Eq. (2)
    gamma = p.boost or f.sampled / max(1, round(f.attackers * f.sampled))  # Eq. (6): n / f
    return {k: gamma * v for k, v in delta.items()}  # Eq. (6)


# -- at the server's door: colluders who read the round's honest updates ----------------------------


def collude(config: Config, clients: list[int], updates: list[Params], server_round: Optional[int] = None) -> list[Params]:
    """Replace the attackers' updates by ALIE's (Eq. 3) or IPM's (Eq. 4) vector; others pass unchanged."""
    f = config.federation
    bad = attackers(config, server_round)
    mine = [i for i, c in enumerate(clients) if c in bad]
    honest = [flatten(u) for c, u in zip(clients, updates) if c not in bad]
    if f.attack not in COLLUDING or not mine or not honest:
        return updates
    g = torch.stack(honest)  # (n - f, d)
    mu = g.mean(0)
    if f.attack == "alie":
        z = f.poison.z if f.poison.z is not None else alie_z(len(clients), len(mine))
        sigma = g.std(0, unbiased=False) if len(honest) > 1 else torch.zeros_like(mu)
        crafted = mu - z * sigma  # Eq. (3)
    else:
        crafted = -f.poison.epsilon * mu  # Eq. (4)
    out = list(updates)
    for i in mine:
        out[i] = unflatten(crafted.clone(), updates[i])
    return out


# -- what the attack achieved --------------------------------------------------------------------


def attack_success(model: nn.Module, params: Params, images: torch.Tensor, labels: torch.Tensor,
                   config: Config) -> Optional[float]:
    """Backdoor: share of triggered test images (not of the target class) the model calls the target.
    Label flip: share of the source class's test images it calls the target. None for other attacks."""
    f, p = config.federation, config.federation.poison
    if f.attack == "backdoor":
        chosen = labels != p.target
        x = add_trigger(images[chosen], p.trigger)
    elif f.attack == "label_flip":
        chosen = labels == p.source
        x = images[chosen]
    else:
        return None
    if not bool(chosen.any()):
        return None
    with torch.no_grad():
        predicted = functional_call(model, params, (x,)).argmax(dim=1)
    return float((predicted == p.target).float().mean())
