"""Robust aggregation: strategies that bound what a few poisoned updates can do to the mean.

    strategy = create_strategy(config)      # federation.strategy = "multikrum", ...
    strategy.outcomes[r].kept               # {client: weight its update got in round r} (0: dropped)

Flower's own rules where it has one, the lab's `LabStrategy` mixed in (seeded sampling, kept views,
the colluding attackers' hook): FedMedian, FedTrimmedAvg, Krum, MultiKrum, Bulyan. Flower's rules act
on the replied weights w_k = w_t - Delta_k; a rule that commutes with the shift (all of these) gives the
same aggregate on either. Where Flower has none, a small rule of our own over FedAvg's plumbing.

Notation: n replies, f attackers assumed (`federation.byzantine`), Delta_k client k's update, n_k its
images, [.]_j coordinate j, tau a clipping bound (0 in the config: the round's median norm).

    median         [Delta]_j = median_k [Delta_k]_j                                  # Eq. (1)  Yin et al. 2018
    trimmed mean   [Delta]_j = mean of [Delta_k]_j without the beta n largest and smallest   # Eq. (2)  Yin et al.
    Krum           score(k) = sum of ||Delta_k - Delta_i||^2 over its n - f - 2 nearest i;
                   Delta = the Delta_k of lowest score                               # Eq. (3)  Blanchard et al. 2017
    MultiKrum      Delta = weighted mean of the m lowest-scoring updates (m = n - f)  # Eq. (4)
    Bulyan         theta = n - 2f picked by Krum one after another, then per coordinate the mean of the
                   beta = theta - 2f values closest to their median                  # Eq. (5)  El Mhamdi et al. 2018
    norm clip      Delta = sum_k n_k Delta_k min(1, tau / ||Delta_k||) / sum_k n_k     # Eq. (6)  Sun et al. 2019
    centered clip  v_{l+1} = v_l + (1/n) sum_k (Delta_k - v_l) min(1, tau / ||Delta_k - v_l||),
                   v_0 = the previous round's aggregate, L passes                     # Eq. (7)  Karimireddy et al. 2021
    FLTrust        g_0 = the server's own update on its clean root images,
                   TS_k = ReLU(cos(Delta_k, g_0)),  Delta = sum_k TS_k (||g_0|| / ||Delta_k||) Delta_k / sum_k TS_k
                                                                                    # Eq. (8)  Cao et al. 2021, Eq. (2)-(4)

What `kept` reports: Krum, MultiKrum: 1 for a chosen update, 0 otherwise; median, trimmed mean,
Bulyan: the share of coordinates where the client's value entered the aggregate; norm and centered
clip: the factor min(1, tau / ||.||) its update was scaled by; FLTrust: its trust score TS_k.
"""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import Bulyan, FedAvg, FedMedian, FedTrimmedAvg, Krum, MultiKrum
from flwr.serverapp.strategy.bulyan import aggregate_n_closest_weights
from flwr.serverapp.strategy.multikrum import select_multikrum

from ..config import Config
from ..defences.secure_aggregation import flatten, unflatten
from ..leakage import Params, client_update
from .client_app import architecture, to_arrays, to_params
from .strategy import LabStrategy, RoundOutcome
from .task import federated_data, local_steps, round_generator

__all__ = ["ROBUST_STRATEGIES", "robust_options", "coordinate_share", "norm_clip", "centered_clip", "fltrust"]


# -- the rules as functions on a stack of updates (what the tests compare) -----------------------------


def coordinate_share(stack: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """(n,) share of coordinates where each row's rank among the n values lies in [low, high)."""
    ranks = stack.argsort(0).argsort(0)  # (n, d)
    return ((ranks >= low) & (ranks < high)).float().mean(1)


def _bound(norms: torch.Tensor, tau: float) -> float:
    return tau if tau > 0 else float(norms.median())


def norm_clip(updates: torch.Tensor, sizes: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (6): each update scaled into the ball of radius tau, then the weighted mean; and the scales."""
    norms = updates.norm(dim=1)  # (n,)
    scale = (_bound(norms, tau) / norms.clamp_min(1e-12)).clamp(max=1.0)
    weights = sizes / sizes.sum()
    return (weights[:, None] * scale[:, None] * updates).sum(0), scale  # Eq. (6)


def centered_clip(updates: torch.Tensor, start: torch.Tensor, tau: float, passes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (7): L passes of clipping around the running centre v; and each update's last scale."""
    v = start.clone()
    tau = _bound((updates - v).norm(dim=1), tau)
    scale = torch.ones(len(updates))
    for _ in range(passes):
        diff = updates - v  # (n, d)
        scale = (tau / diff.norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)
        v = v + (scale[:, None] * diff).mean(0)  # Eq. (7)
    return v, scale


def fltrust(updates: torch.Tensor, root: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (8): updates weighted by their ReLU'd cosine with the root update, rescaled to its norm."""
    root_norm = root.norm().clamp_min(1e-12)
    norms = updates.norm(dim=1).clamp_min(1e-12)
    trust = torch.relu(updates @ root / (norms * root_norm))  # TS_k, Eq. (2) in Cao et al.
    if float(trust.sum()) == 0.0:
        return torch.zeros_like(root), trust  # nobody trusted: the model stays where it is
    scaled = updates * (root_norm / norms)[:, None]  # Eq. (3) in Cao et al.
    return (trust[:, None] * scaled).sum(0) / trust.sum(), trust  # Eq. (4) in Cao et al.


# -- the strategies ----------------------------------------------------------------------------------


def _unpack(replies: list[Message]) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """Partition ids, the (n, d) stack of replied weights, and the (n,) sizes n_k."""
    clients = [int(m.content["metrics"]["partition-id"]) for m in replies]
    sizes = torch.tensor([float(m.content["metrics"]["num-examples"]) for m in replies])
    stack = torch.stack([flatten(to_params(m.content["arrays"])) for m in replies])
    return clients, stack, sizes


class _Recorded:
    """Placed between LabStrategy and a Flower rule: adjusts f to the round, runs the rule, records `kept`."""

    lab: Config
    outcomes: dict[int, RoundOutcome]

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[Optional[ArrayRecord], Optional[MetricRecord]]:
        replies = list(replies)
        clients, stack, _ = _unpack(replies)  # before Flower's median pops the arrays
        self.for_round(len(replies))
        kept = self.kept(replies, stack)
        arrays, metrics = super().aggregate_train(server_round, replies)  # type: ignore[misc]
        self.outcomes.setdefault(server_round, RoundOutcome()).kept = dict(zip(clients, kept.tolist()))
        return arrays, metrics

    def for_round(self, n: int) -> None:
        """Set the rule's parameters for a round of n replies (dropouts can leave fewer than sampled)."""

    def kept(self, replies: list[Message], stack: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class LabMedian(LabStrategy, _Recorded, FedMedian):
    """Flower's FedMedian, Eq. (1)."""

    def kept(self, replies: list[Message], stack: torch.Tensor) -> torch.Tensor:
        n = len(stack)
        return coordinate_share(stack, (n - 1) // 2, n // 2 + 1)  # the middle value (two of them for even n)


class LabTrimmedMean(LabStrategy, _Recorded, FedTrimmedAvg):
    """Flower's FedTrimmedAvg, Eq. (2)."""

    def kept(self, replies: list[Message], stack: torch.Tensor) -> torch.Tensor:
        cut = int(self.beta * len(stack))  # type: ignore[attr-defined]
        return coordinate_share(stack, cut, len(stack) - cut)


class _KrumKept(_Recorded):
    def kept(self, replies: list[Message], stack: torch.Tensor) -> torch.Tensor:
        contents = [m.content for m in replies]
        chosen = select_multikrum(contents, self.num_malicious_nodes, self.num_nodes_to_select)  # type: ignore[attr-defined]
        ids = {id(c) for c in chosen}
        return torch.tensor([1.0 if id(c) in ids else 0.0 for c in contents])


class LabKrum(LabStrategy, _KrumKept, Krum):
    """Flower's Krum, Eq. (3): one update, the one closest to its n - f - 2 neighbours."""


class LabMultiKrum(LabStrategy, _KrumKept, MultiKrum):
    """Flower's MultiKrum, Eq. (4): the mean of the m updates Krum scores best."""

    def for_round(self, n: int) -> None:
        f = self.lab.federation
        self.num_nodes_to_select = max(1, min(f.robust.select or n - f.byzantine, n))


class _KeptInputBulyan(Bulyan):
    """Flower's Bulyan.aggregate_train with its helpers, reading the arrays with keep_input=True: Flower's
    keep_input=False calls gc.collect() for every reply (0.7 s each in a process as large as the app's)."""

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[Optional[ArrayRecord], Optional[MetricRecord]]:
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        f = self.num_malicious_nodes
        if len(valid) < 4 * f + 3:
            return None, None
        theta = len(valid) - 2 * f
        chosen = self.selection_rule([m.content for m in valid], f, theta)
        key = list(chosen[0].array_records.keys())[0]
        names = list(chosen[0][key].keys())
        layers = [c[key].to_numpy_ndarrays() for c in chosen]
        median = [np.median(arr, axis=0) for arr in zip(*layers)]
        merged = aggregate_n_closest_weights(median, layers, theta - 2 * f)  # Eq. (5)
        arrays = ArrayRecord(dict(zip(names, (Array(np.asarray(a)) for a in merged))))
        return arrays, self.train_metrics_aggr_fn(chosen, self.weighted_by_key)


class LabBulyan(LabStrategy, _Recorded, _KeptInputBulyan):
    """Flower's Bulyan, Eq. (5): Krum's pick of n - 2f, then a trimmed mean around the median."""

    def for_round(self, n: int) -> None:
        self.num_malicious_nodes = max(0, min(self.lab.federation.byzantine, (n - 3) // 4))  # n >= 4f + 3

    def kept(self, replies: list[Message], stack: torch.Tensor) -> torch.Tensor:
        f = self.num_malicious_nodes
        theta = len(replies) - 2 * f
        beta = theta - 2 * f
        contents = [m.content for m in replies]
        chosen = {id(c) for c in select_multikrum(contents, f, theta)}
        rows = [i for i, c in enumerate(contents) if id(c) in chosen]
        picked = stack[rows]  # (theta, d)
        far = (picked - picked.median(0).values).abs()
        closest = far.argsort(0)[:beta]  # (beta, d): the rows each coordinate averages
        counts = torch.bincount(closest.flatten(), minlength=len(rows)).float() / stack.shape[1]
        share = torch.zeros(len(stack))
        share[rows] = counts
        return share


class _OwnRule:
    """A rule Flower lacks, on FedAvg's plumbing: it sees the updates Delta_k = w_t - w_k."""

    lab: Config
    outcomes: dict[int, RoundOutcome]
    global_params: Params

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[Optional[ArrayRecord], Optional[MetricRecord]]:
        valid, _ = self._check_and_log_replies(replies, is_train=True)  # type: ignore[attr-defined]
        if not valid:
            return None, None
        clients, stack, sizes = _unpack(valid)
        start = flatten(self.global_params)
        delta, kept = self.rule(server_round, start - stack, sizes)
        self.outcomes.setdefault(server_round, RoundOutcome()).kept = dict(zip(clients, kept.tolist()))
        arrays = to_arrays(unflatten(start - delta, self.global_params))
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)  # type: ignore[attr-defined]
        return arrays, metrics

    def rule(self, server_round: int, updates: torch.Tensor, sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class LabNormClip(LabStrategy, _OwnRule, FedAvg):
    """FedAvg of updates clipped to norm tau, Eq. (6)."""

    def rule(self, server_round, updates, sizes):
        return norm_clip(updates, sizes, self.lab.federation.robust.clip)


class LabCenteredClip(LabStrategy, _OwnRule, FedAvg):
    """Centered clipping around the last aggregate, Eq. (7)."""

    def rule(self, server_round, updates, sizes):
        r = self.lab.federation.robust
        start = getattr(self, "_previous", torch.zeros(updates.shape[1]))
        self._previous, scale = centered_clip(updates, start, r.clip, r.iterations)
        return self._previous, scale


class LabFLTrust(LabStrategy, _OwnRule, FedAvg):
    """FLTrust, Eq. (8): the server trains on its own clean root images and trusts what points the same way."""

    def rule(self, server_round, updates, sizes):
        return fltrust(updates, self.root_update(server_round))

    def root_update(self, server_round: int) -> torch.Tensor:
        """g_0: the clients' local training, on the server's first `robust.root` public train images, for as
        many SGD steps as a client of average share takes (Cao et al. give the server the clients' R_l local
        iterations: fewer steps would shrink g_0, and with it every rescaled update)."""
        config = self.lab
        data = federated_data(config)
        count = config.federation.robust.root
        order = torch.randperm(count, generator=round_generator(config.seed, server_round, config.federation.clients))
        images, labels = data.train_images[:count][order], data.train.labels[:count][order]
        model = architecture(config, data.num_classes)
        size = min(config.federation.batch_size, count)
        share = round(sum(len(s) for s in data.shares) / len(data.shares))
        delta = client_update(model, self.global_params, images, labels, "fedavg", local_steps(share, config),
                              config.federation.lr, size)
        return flatten({k: v.detach() for k, v in delta.items()})


ROBUST_STRATEGIES: dict[str, type] = {
    "median": LabMedian, "trimmed_mean": LabTrimmedMean, "krum": LabKrum, "multikrum": LabMultiKrum,
    "bulyan": LabBulyan, "norm_clip": LabNormClip, "centered_clip": LabCenteredClip, "fltrust": LabFLTrust,
}


def robust_options(config: Config) -> dict:
    """The Flower constructor arguments a robust strategy takes from the config."""
    f = config.federation
    name = f.strategy
    if name in ("krum", "bulyan"):
        return {"num_malicious_nodes": f.byzantine}
    if name == "multikrum":
        return {"num_malicious_nodes": f.byzantine, "num_nodes_to_select": f.robust.select or f.sampled - f.byzantine}
    if name == "trimmed_mean":
        return {"beta": f.robust.trim}
    return {}
