"""The robust aggregators: each against Flower's own helper or a case worked by hand, and what `kept` says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import Bulyan, FedMedian, FedTrimmedAvg, MultiKrum
from flwr.serverapp.strategy.fedtrimmedavg import trim_mean
from flwr.supercore.task_identity import TaskIdentity

from engine.config import Config, with_overrides
from engine.federation.robust import centered_clip, fltrust, norm_clip
from engine.federation.strategy import RoundOutcome, create_strategy

SHAPES = {"a.weight": (5, 3), "a.bias": (5,)}  # 20 coordinates


def config(strategy: str, *extra: str, clients: int = 11) -> Config:
    return with_overrides(Config(), ["model.name=convnet", f"federation.clients={clients}", "federation.fraction=1.0",
                                     f"federation.strategy={strategy}", *extra])


def replies(updates: list[torch.Tensor], sizes: list[int] | None = None) -> tuple[dict, list[Message]]:
    """Replies carrying w_k = w_t - Delta_k for the given flat (20,) updates."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    sent = {k: torch.randn(s, generator=torch.Generator().manual_seed(1)) for k, s in SHAPES.items()}
    out = []
    for k, u in enumerate(updates):
        ins = Message(content=RecordDict({"arrays": ArrayRecord(sent)}), dst_node_id=k + 1, message_type=MessageType.TRAIN)
        ins.metadata.__dict__["_message_id"] = f"m{k}"
        delta = {"a.weight": u[:15].view(5, 3), "a.bias": u[15:]}
        weights = {n: sent[n] - delta[n] for n in sent}
        metrics = MetricRecord({"num-examples": (sizes or [10] * len(updates))[k], "partition-id": k})
        out.append(Message(content=RecordDict({"arrays": ArrayRecord(weights), "metrics": metrics}), reply_to=ins))
    return sent, out


def aggregate(cfg: Config, updates: list[torch.Tensor], sizes: list[int] | None = None):
    """Our strategy's aggregate update Delta (flat) and its `kept`, for hand-made updates."""
    sent, msgs = replies(updates, sizes)
    strategy = create_strategy(cfg)
    strategy._sent[1] = ArrayRecord(sent)
    strategy.outcomes[1] = RoundOutcome(sampled=list(range(1, len(updates) + 1)))
    arrays, _ = strategy.aggregate_train(1, msgs)
    w = arrays.to_torch_state_dict()
    delta = torch.cat([(sent[k] - w[k]).flatten() for k in SHAPES])
    return delta, strategy.outcomes[1].kept


def flower(strategy, updates: list[torch.Tensor], sizes: list[int] | None = None) -> torch.Tensor:
    """Flower's own strategy on the same replies, as an update."""
    sent, msgs = replies(updates, sizes)
    w = strategy.aggregate_train(1, msgs)[0].to_torch_state_dict()
    return torch.cat([(sent[k] - w[k]).flatten() for k in SHAPES])


def honest_and_bad(n: int = 11, f: int = 2, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    good = [torch.ones(20) + 0.1 * torch.randn(20, generator=g) for _ in range(n - f)]
    return good + [-10 * torch.ones(20) for _ in range(f)]


def test_median_and_trimmed_mean_equal_flowers_and_say_who_entered():
    updates = honest_and_bad()
    delta, kept = aggregate(config("median"), updates)
    assert torch.allclose(delta, flower(FedMedian(), updates), atol=1e-6)
    assert torch.allclose(delta, torch.stack(updates).median(0).values, atol=1e-6)  # n odd: the middle value
    assert kept[9] == kept[10] == 0.0 and abs(sum(kept.values()) - 1.0) < 1e-6  # one value per coordinate
    delta, kept = aggregate(config("trimmed_mean", "federation.robust.trim=0.2"), updates)
    expected = trim_mean(np.stack([u.numpy() for u in updates]), 0.2)
    assert torch.allclose(delta, torch.from_numpy(expected).float(), atol=1e-6)
    assert torch.allclose(delta, flower(FedTrimmedAvg(beta=0.2), updates), atol=1e-6)
    assert kept[9] == kept[10] == 0.0 and abs(sum(kept.values()) - 7.0) < 1e-6  # 11 - 2 x int(0.2 x 11)


def test_krum_picks_one_honest_update_and_multikrum_averages_the_honest():
    updates = honest_and_bad()
    cfg = config("krum", "federation.attack=sign_flip", "federation.attackers=0.2")  # f = ceil(0.2 x 11) = 3
    delta, kept = aggregate(cfg, updates)
    assert sum(kept.values()) == 1.0 and kept[9] == kept[10] == 0.0
    chosen = max(kept, key=kept.get)
    assert torch.allclose(delta, updates[chosen], atol=1e-6)
    cfg = config("multikrum", "federation.attack=sign_flip", "federation.attackers=0.2")
    delta, kept = aggregate(cfg, updates)
    assert sum(kept.values()) == 11 - 3 and kept[9] == kept[10] == 0.0
    assert torch.allclose(delta, flower(MultiKrum(num_malicious_nodes=3, num_nodes_to_select=8), updates), atol=1e-6)


def test_bulyan_equals_flowers_and_keeps_the_attackers_out():
    updates = honest_and_bad()
    cfg = config("bulyan", "federation.robust.byzantine=2")
    delta, kept = aggregate(cfg, updates)
    assert torch.allclose(delta, flower(Bulyan(num_malicious_nodes=2), updates), atol=1e-5)
    assert kept[9] == kept[10] == 0.0
    assert abs(sum(kept.values()) - (11 - 4 - 4)) < 1e-5  # beta = n - 4f values per coordinate


def test_norm_clip_by_hand():
    updates = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    delta, scale = norm_clip(updates, torch.tensor([1.0, 1.0]), tau=1.0)
    assert torch.allclose(delta, torch.tensor([0.3, 0.9]))  # ([0.6, 0.8] + [0, 1]) / 2
    assert torch.allclose(scale, torch.tensor([0.2, 1.0]))
    delta, scale = norm_clip(updates, torch.tensor([1.0, 3.0]), tau=10.0)  # nothing to clip: FedAvg
    assert torch.allclose(delta, torch.tensor([0.75, 1.75]))
    boosted = honest_and_bad(f=0) + [50 * torch.ones(20)]
    _, kept = aggregate(config("norm_clip", clients=12), boosted)  # tau = the median norm
    assert kept[11] < 0.1 and sum(1 for v in kept.values() if v == 1.0) >= 6


def test_centered_clip_bounds_an_outliers_pull():
    updates = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [100.0, 0.0]])
    v, scale = centered_clip(updates, torch.zeros(2), tau=1e9, passes=1)
    assert torch.allclose(v, updates.mean(0))  # no clipping: the mean
    v, scale = centered_clip(updates, torch.tensor([1.0, 0.0]), tau=2.0, passes=1)
    assert torch.allclose(v, torch.tensor([1.5, 0.0]))  # the outlier moves v by tau / n = 0.5
    assert torch.allclose(scale, torch.tensor([1.0, 1.0, 1.0, 2.0 / 99.0]))
    v, _ = centered_clip(updates, torch.tensor([1.0, 0.0]), tau=2.0, passes=2)
    assert torch.allclose(v, torch.tensor([1.625, 0.0]))  # then (3 x -0.5 + 2) / 4 more


def test_fltrust_distrusts_what_points_against_the_root_update():
    root = torch.tensor([1.0, 0.0])
    updates = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-5.0, 0.0]])
    delta, trust = fltrust(updates, root)
    assert torch.allclose(trust, torch.tensor([1.0, 2 ** -0.5, 0.0]))
    expected = (1.0 * torch.tensor([1.0, 0.0]) + 2 ** -0.5 * torch.tensor([2 ** -0.5, 2 ** -0.5])) / (1 + 2 ** -0.5)
    assert torch.allclose(delta, expected)
    delta, trust = fltrust(-updates[:1], root)
    assert torch.equal(delta, torch.zeros(2)) and trust.sum() == 0  # nobody trusted: no step


@pytest.mark.parametrize("name", ["median", "trimmed_mean", "krum", "multikrum", "bulyan", "norm_clip",
                                  "centered_clip"])
def test_every_aggregator_reports_a_weight_for_every_reply(name):
    updates = honest_and_bad()
    _, kept = aggregate(config(name, "federation.robust.byzantine=2"), updates)
    assert sorted(kept) == list(range(11))
    assert all(0.0 <= w <= 1.0 for w in kept.values())
