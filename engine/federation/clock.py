"""A virtual clock for a federated round: slow phones, thin uplinks, deadlines and dropouts.

Flower itself has no model of the network; the in-process grid asks this module when each reply
would have arrived. Every client draws, once per run and seeded, a one-way latency L_k, a download
and an upload bandwidth D_k, U_k (bytes per second) and a compute speed S_k (images per second),
each log-normal around the config's median. In round r a sampled client vanishes with probability
p (it never replies); the others reply at

    t_k = (L_k + bytes_down / D_k) + (E n_k / S_k) + (L_k + bytes_up / U_k)     # download, compute, upload

and the server keeps a reply only if t_k <= T, the round's deadline; later ones are stragglers.
The round ends at T if anyone is missing, else at the last arrival. Secure aggregation (Bonawitz et
al. 2017) adds three more round trips (its key, share and unmasking rounds) and its extra bytes:

    t_k += 3 * 2 L_k + extra_up / U_k                                                # Eq. (SA)

Same seed, same profiles, same draws: the history repeats bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..config import FederationConfig, Spread

__all__ = ["Profile", "ClientTiming", "draw_profiles", "client_timing", "dropout_draws", "fastest_round_trip"]

Status = Literal["replied", "dropped", "straggler"]
MBIT = 1e6 / 8  # bytes per second in one Mbit/s


@dataclass(frozen=True)
class Profile:
    """One client's device and network, fixed for the run."""

    latency: float  # seconds, one way
    down: float  # bytes per second
    up: float  # bytes per second
    speed: float  # images per second of local training


@dataclass(frozen=True)
class ClientTiming:
    """When one sampled client's phases ended in a round (seconds from the round's start)."""

    client: int
    download: float  # end of download
    compute: float  # end of local training
    upload: float  # arrival of the reply at the server
    status: Status
    bytes_down: int
    bytes_up: int


def _draw(spread: Spread, count: int, rng: np.random.Generator) -> np.ndarray:
    return spread.median * np.exp(spread.spread * rng.standard_normal(count))


def draw_profiles(settings: FederationConfig, seed: int) -> list[Profile]:
    """Every client's profile, drawn from the config's distributions with `seed`."""
    rng = np.random.default_rng([seed, 0xC10C])
    n = settings.clients
    latency, down = _draw(settings.latency, n, rng), _draw(settings.bandwidth.down, n, rng) * MBIT
    up, speed = _draw(settings.bandwidth.up, n, rng) * MBIT, _draw(settings.compute, n, rng)
    return [Profile(float(a), float(b), float(c), float(d)) for a, b, c, d in zip(latency, down, up, speed)]


def dropout_draws(settings: FederationConfig, seed: int, server_round: int, clients: list[int]) -> set[int]:
    """The sampled clients that vanish in this round (each with probability `settings.dropout`)."""
    if settings.dropout <= 0:
        return set()
    rng = np.random.default_rng([seed, 0xD20B, server_round])
    draws = rng.random(len(clients))
    return {c for c, u in zip(sorted(clients), draws) if u < settings.dropout}


def client_timing(client: int, profile: Profile, images: int, epochs: int, bytes_down: int, bytes_up: int,
                  deadline: float, dropped: bool, extra_round_trips: int = 0) -> ClientTiming:
    """One client's phases in a round and whether its reply counts (Eq. above)."""
    download = profile.latency + bytes_down / profile.down
    compute = download + epochs * images / profile.speed
    upload = compute + profile.latency + bytes_up / profile.up + extra_round_trips * 2 * profile.latency  # Eq. (SA)
    status: Status = "dropped" if dropped else ("replied" if upload <= deadline else "straggler")
    return ClientTiming(client, download, compute, upload, status, bytes_down, bytes_up)


def fastest_round_trip(profiles: list[Profile], sizes: list[int], epochs: int, bytes_model: int) -> float:
    """The earliest any client could reply (to reject a deadline no client can ever meet)."""
    return min(
        client_timing(k, p, n, epochs, bytes_model, bytes_model, float("inf"), False).upload
        for k, (p, n) in enumerate(zip(profiles, sizes))
    )
