"""Privacy spent over a federated run: Opacus's RDP accountant composed over the rounds.

    ledger = PrivacyLedger(config, share_sizes)
    ledger.record_round(clients_that_replied)
    ledger.epsilon()          # None without noise

Example level (DP-SGD on every client, Abadi et al. 2016): a client of n_k images that takes part in
a round runs s_k = ceil(E n_k / B) noisy steps, each sampling B of its n_k images, q_k = B / n_k.
Its guarantee after taking part in r_k rounds composes r_k * s_k such steps:

    eps_k = RDP(sigma, q_k, r_k * s_k; delta),     reported: max_k eps_k       # Eq. (1)

Client level (DP-FedAvg, McMahan et al. 2018): each round the server adds noise z S to the sum of
the sampled clients' clipped updates; a client is in a round's sample with probability q = K / N:

    eps = RDP(z, q, rounds so far; delta)                                      # Eq. (2)

Opacus assumes Poisson sampling where the lab samples a fixed number, the usual approximation
(as in the rest of the lab). A client that did not reply released nothing that round.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Optional, Sequence

from ..config import Config
from ..defences import epsilon as rdp_epsilon
from .task import local_steps

__all__ = ["PrivacyLedger"]


class PrivacyLedger:
    """Counts who took part in which round and turns it into epsilon at the config's delta."""

    def __init__(self, config: Config, share_sizes: Sequence[int]) -> None:
        self.config, self.sizes = config, list(share_sizes)
        self.rounds = 0
        self.taken = Counter()  # client -> rounds it took part in
        self._cache: dict[tuple[float, int], float] = {}

    def record_round(self, replied: Iterable[int]) -> None:
        self.rounds += 1
        self.taken.update(replied)

    def _eps(self, q: float, steps: int) -> float:
        dp = self.config.defence.dp
        if (q, steps) not in self._cache:
            self._cache[(q, steps)] = rdp_epsilon(dp.noise_multiplier, q, steps, dp.delta)
        return self._cache[(q, steps)]

    def epsilon(self) -> Optional[float]:
        """The worst client's epsilon so far (Eq. 1), or the client-level epsilon (Eq. 2); None without noise."""
        dp, f = self.config.defence.dp, self.config.federation
        if dp.noise_multiplier <= 0:
            return None
        if dp.level == "client":
            return self._eps(f.sampled / f.clients, self.rounds) if self.rounds else 0.0  # Eq. (2)
        worst = 0.0
        for client, rounds in self.taken.items():
            n = self.sizes[client]
            q = min(1.0, min(f.batch_size, n) / n)
            worst = max(worst, self._eps(q, rounds * local_steps(n, self.config)))  # Eq. (1)
        return worst
