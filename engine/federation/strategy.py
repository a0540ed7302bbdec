"""The server's strategy: Flower's FedAvg or FedProx, with the lab's three additions.

    strategy = create_strategy(config)        # a flwr.serverapp.strategy.FedAvg or FedProx subclass
    strategy.start(grid, arrays, num_rounds)  # Flower's own round loop
    strategy.outcomes[r]                      # what round r did: its view, who replied, why it aborted

1. Sampling is seeded (Flower samples with the process-wide `random`): the same seed samples the
   same clients, so a run repeats bit for bit; on a runtime whose node ids are random (Ray, SuperNodes)
   the server first asks each node its partition (`partitions`) and samples in partition order, so
   every runtime trains the same clients.
2. What the server saw is kept per round on request (`federation.keep_views`): the global weights
   it sent, each reply's update Delta_k = w_t - w_k with its size, and the aggregate. That is the
   honest-but-curious server's material for an attack on any round.
3. The defences that act at the server: secure aggregation (Bonawitz et al. 2017) of the weighted
   updates, where the round's non-repliers are real dropouts whose masks the Shamir shares remove,
   and a round with fewer survivors than the threshold is aborted; and client-level DP (McMahan et
   al. 2018), which clips each update to S and adds N(0, z^2 S^2) to the sum:

    Delta = sum_k (n_k / n) Delta_k                                      # Eq. (1) FedAvg, in the clear
    Delta = sum_k (n_k / nbar) Delta_k / sum_k (n_k / nbar)              # Eq. (2) the same, by secure sum
    Delta = (sum_k clip(Delta_k, S) + N(0, z^2 S^2 I)) / K               # Eq. (3) DP-FedAvg, equal weights
    w_{t+1} = w_t - Delta

With secure aggregation the kept view holds the aggregate only: the server never saw a reply.
Robust aggregators (median, Krum, ..., `robust.py`) are LabStrategy over Flower's rules; poisoned
clients (`poison.py`) act in the ClientApp, and the colluders who read the round's honest updates in
`before_aggregation`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedProx

from ..config import Config
from ..defences import SecureAggregationError, add_gaussian_noise, clip_update, secure_sum
from ..defences.secure_aggregation import flatten, unflatten
from ..leakage import Params
from .client_app import to_arrays, to_params
from .poison import attackers, check_poison, collude

__all__ = ["Reply", "ServerView", "RoundOutcome", "create_strategy", "honest_cosine", "STRATEGIES"]


@dataclass(frozen=True, eq=False)
class Reply:
    """One client's reply as the server received it."""

    client: int  # partition id
    num_examples: int  # n_k
    update: Params  # Delta_k = w_t - w_k


@dataclass(frozen=True, eq=False)
class ServerView:
    """Everything the server saw in one round: the weights it sent, the replies (none under secure
    aggregation), and the aggregate it applied."""

    server_round: int
    params: Params  # w_t, sent to the sampled clients
    replies: tuple[Reply, ...]  # empty when secure aggregation hid them
    aggregate: Params  # Delta, the (weighted) mean update it applied
    clients: tuple[int, ...]  # partition ids whose updates are in the aggregate
    sizes: tuple[int, ...]  # their n_k
    secure: bool

    def __repr__(self) -> str:
        seen = "only the secure sum" if self.secure else f"{len(self.replies)} individual replies and their mean"
        return f"ServerView(round {self.server_round}: the server saw {seen} of clients {list(self.clients)})"


@dataclass
class RoundOutcome:
    """What a round did at the server."""

    sampled: list[int] = field(default_factory=list)  # node ids
    replied: list[int] = field(default_factory=list)  # partition ids whose reply arrived
    aborted: str = ""  # why no aggregate was applied ("" when one was)
    secure_bytes: float = 0.0  # bytes a client sent through the secure protocol (0 without it)
    kept: dict[int, float] = field(default_factory=dict)  # robust aggregators: client -> weight it got (0: dropped)
    attack_success: Optional[float] = None  # a backdoor's success on triggered test images after the round
    honest_cosine: Optional[float] = None  # poisoned rounds: cos(applied aggregate, the honest replies' FedAvg)
    view: Optional[ServerView] = None


def honest_cosine(delta: Params, updates: list[Reply], bad: frozenset[int]) -> Optional[float]:
    """How closely a poisoned round's applied aggregate follows what the honest clients alone would have
    given: cos(Delta, sum_{k honest} n_k Delta_k / sum_{k honest} n_k), 1 = the attackers moved nothing.
    A lab's measurement (the server cannot tell who is honest); None in a round without an attacker."""
    honest = [u for u in updates if u.client not in bad]
    if len(honest) == len(updates) or not honest:
        return None
    total = sum(u.num_examples for u in honest)
    target = sum(u.num_examples / total * flatten(u.update) for u in honest)
    return float(torch.nn.functional.cosine_similarity(flatten(delta), target, dim=0))


class LabStrategy:
    """The lab's additions on top of a Flower strategy class (mixed in before it)."""

    def __init__(self, lab: Config, **kwargs) -> None:
        super().__init__(**kwargs)  # type: ignore[call-arg]
        self.lab = lab
        self.outcomes: dict[int, RoundOutcome] = {}
        self._sent: dict[int, ArrayRecord] = {}
        self.partitions: dict[int, int] = {}  # node id -> partition id, where the runtime's node ids are random

    # -- 1. seeded sampling -------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        nodes = sorted(grid.get_node_ids(), key=lambda node: self.partitions.get(node, node))  # partition order
        count = min(len(nodes), max(int(len(nodes) * self.fraction_train), self.min_train_nodes))
        chosen = random.Random(self.lab.seed * 100_003 + server_round).sample(nodes, count)
        config["server-round"] = server_round
        if isinstance(self, FedProx):
            config["proximal-mu"] = self.proximal_mu
        self._sent[server_round] = arrays
        self.outcomes[server_round] = RoundOutcome(sampled=sorted(chosen))
        record = RecordDict({"arrays": arrays, "config": config})
        return [Message(content=record, message_type=MessageType.TRAIN, dst_node_id=node) for node in chosen]

    # -- 2. and 3. ----------------------------------------------------------------------------
    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[Optional[ArrayRecord], Optional[MetricRecord]]:
        replies = [m for m in replies if not m.has_error()]
        outcome = self.outcomes.setdefault(server_round, RoundOutcome())
        outcome.replied = sorted(int(m.content["metrics"]["partition-id"]) for m in replies)
        if not replies:
            outcome.aborted = "no client replied before the deadline"
            return None, None
        if not self._needs_updates(server_round):  # plain FedAvg, nothing kept: Flower's own aggregate alone
            self._sent.pop(server_round, None)
            return super().aggregate_train(server_round, replies)  # type: ignore[misc]  # Eq. (1)
        sent = to_params(self._sent.pop(server_round))
        updates = [
            Reply(int(m.content["metrics"]["partition-id"]), int(m.content["metrics"]["num-examples"]),
                  {k: sent[k] - w for k, w in to_params(m.content["arrays"]).items()})
            for m in replies
        ]
        updates = self.before_aggregation(server_round, sent, replies, updates)  # colluders (poison.py)
        d = self.lab.defence
        if d.secure_aggregation or (d.dp.noise_multiplier > 0 and d.dp.level == "client"):
            try:
                delta = self._defended_mean(server_round, outcome, updates)
            except (SecureAggregationError, ValueError) as err:
                outcome.aborted = f"secure aggregation aborted the round: {err}"
                return None, None
            arrays = to_arrays({k: sent[k] - delta[k] for k in sent})
            metrics = MetricRecord({"num-examples": sum(u.num_examples for u in updates)})
        else:
            arrays, metrics = super().aggregate_train(server_round, replies)  # type: ignore[misc]  # Eq. (1)
            delta = {k: sent[k] - w for k, w in to_params(arrays).items()}
        outcome.honest_cosine = honest_cosine(delta, updates, attackers(self.lab, server_round))
        if server_round in self.lab.federation.keep_views:
            hidden = d.secure_aggregation
            outcome.view = ServerView(
                server_round, sent, () if hidden else tuple(updates), delta, tuple(u.client for u in updates),
                tuple(u.num_examples for u in updates), hidden,
            )
        return arrays, metrics

    def _needs_updates(self, server_round: int) -> bool:
        """Whether this round needs each reply as an update (decoding 1000 replies' arrays costs seconds)."""
        d, f = self.lab.defence, self.lab.federation
        return (server_round in f.keep_views or d.secure_aggregation or (d.dp.noise_multiplier > 0 and d.dp.level == "client")
                or f.attack != "none" or type(self) not in (LabFedAvg, LabFedProx))

    def before_aggregation(self, server_round: int, sent: Params, replies: list[Message], updates: list[Reply]) -> list[Reply]:
        """The replies as the aggregator takes them: colluding attackers' updates replaced (ALIE, IPM)."""
        self.global_params = sent  # w_t, for the robust rules that work on updates (robust.py)
        crafted = collude(self.lab, [u.client for u in updates], [u.update for u in updates], server_round)
        for message, update, new in zip(replies, updates, crafted):
            if new is not update.update:
                message.content["arrays"] = to_arrays({k: sent[k] - new[k] for k in sent})
        return [Reply(u.client, u.num_examples, new) for u, new in zip(updates, crafted)]

    def _defended_mean(self, server_round: int, outcome: RoundOutcome, updates: list[Reply]) -> Params:
        """Eq. (2) and (3): the mean update by secure sum and/or with client-level DP."""
        d, like = self.lab.defence, updates[0].update
        client_dp = d.dp.noise_multiplier > 0 and d.dp.level == "client"
        if client_dp:
            weights = [1.0] * len(updates)
            vectors = [flatten(clip_update(u.update, d.dp.clip)) for u in updates]  # Eq. (3)
        else:
            nbar = sum(u.num_examples for u in updates) / len(updates)  # keeps the fixed-point values small
            weights = [u.num_examples / nbar for u in updates]
            vectors = [w * flatten(u.update) for u, w in zip(updates, weights)]
        if d.secure_aggregation:
            summed = self._secure_total(outcome, updates, vectors, weights)
            total, weight_sum = summed[:-1], float(summed[-1])
        else:
            total, weight_sum = torch.stack(vectors).sum(0), sum(weights)
        if client_dp:
            generator = torch.Generator().manual_seed(self.lab.seed * 7919 + server_round)
            noisy = add_gaussian_noise({"all": total}, d.dp.noise_multiplier, d.dp.clip, generator)["all"]
            return unflatten(noisy / len(updates), like)  # Eq. (3)
        return unflatten(total / weight_sum, like)  # Eq. (1) or (2)

    def _secure_total(self, outcome: RoundOutcome, updates: list[Reply], vectors: list[torch.Tensor],
                      weights: list[float]) -> torch.Tensor:
        """Run Bonawitz et al.'s protocol among the sampled clients; the non-repliers drop out before
        sending their masked input, so the Shamir shares remove their masks. Returns [sum w_k x_k, sum w_k]."""
        sampled = len(outcome.sampled)
        by_client = {u.client: torch.cat([v, torch.tensor([w])]) for u, v, w in zip(updates, vectors, weights)}
        zeros = torch.zeros_like(next(iter(by_client.values())))
        slots = sorted(by_client) + [-1] * (sampled - len(by_client))  # -1: a sampled client that never replied
        inputs = [by_client.get(c, zeros) for c in slots]
        dropped = {i for i, c in enumerate(slots) if c < 0}
        threshold = min(self.lab.federation.threshold, sampled)
        if sampled < 2:
            raise ValueError("secure aggregation needs at least 2 sampled clients a round")
        if len(updates) < threshold:
            raise SecureAggregationError(
                f"only {len(updates)} of {sampled} sampled clients replied, fewer than the threshold t = {threshold}"
            )
        result = secure_sum(inputs, threshold, drop_before_input=dropped)
        outcome.secure_bytes = result.bytes_per_client
        return result.total


class LabFedAvg(LabStrategy, FedAvg):
    """Flower's FedAvg with the lab's seeded sampling, kept views and server-side defences."""


class LabFedProx(LabStrategy, FedProx):
    """Flower's FedProx (clients add (mu / 2) ||w - w_t||^2) with the lab's additions."""


STRATEGIES = {"fedavg": LabFedAvg, "fedprox": LabFedProx}


def create_strategy(config: Config, num_classes: int = 10) -> LabStrategy:
    """The strategy `federation.strategy` names, sampling `federation.sampled` clients a round."""
    from .robust import ROBUST_STRATEGIES, robust_options  # robust.py builds on LabStrategy

    f = config.federation
    known = {**STRATEGIES, **ROBUST_STRATEGIES}
    if f.strategy not in known:
        raise ValueError(f"unknown strategy {f.strategy!r}; choose one of {', '.join(known)}")
    check_poison(config, num_classes)
    kwargs = dict(fraction_train=f.fraction, fraction_evaluate=0.0, min_train_nodes=f.sampled,
                  min_evaluate_nodes=0, min_available_nodes=f.clients)
    if f.strategy == "fedprox":
        kwargs["proximal_mu"] = f.proximal_mu
    return known[f.strategy](config, **kwargs, **robust_options(config))
