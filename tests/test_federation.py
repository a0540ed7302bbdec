"""The federated run on Flower: the clock, the aggregate, the privacy ledger, attacking a round, bad input.

Runs are small (a few clients, one local epoch, a narrow ConvNet) so each takes a second or two.
"""

from __future__ import annotations

import math
import threading

import pytest
import torch
from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.task_identity import TaskIdentity
from opacus.accountants import RDPAccountant

from engine.config import Config, ConfigError, with_overrides
from engine.experiment import finish, make_attack, prepare
from engine.federation import FederationError, run_history, simulate
from engine.federation.clock import client_timing
from engine.federation.strategy import RoundOutcome, create_strategy
from engine.federation.task import federated_data, local_steps
from engine.federation.views import server_view, view_leak
from engine.leakage import leak_update

SMALL = ["model.name=convnet", "model.width=4", "federation.clients=12", "federation.fraction=0.5",
         "federation.rounds=3", "federation.local_epochs=1", "federation.batch_size=32"]


def small(*extra: str) -> Config:
    return with_overrides(Config(), SMALL + list(extra))


def test_same_seed_same_history_bit_for_bit():
    cfg = small("federation.dropout=0.3", "federation.deadline=1.5", "federation.compute.spread=1.5")
    first, second = run_history(cfg), run_history(cfg)
    assert first.to_dict() == second.to_dict()
    assert first.initial_accuracy == second.initial_accuracy
    other = run_history(with_overrides(cfg, ["seed=1"]))
    assert other.to_dict() != first.to_dict()


def test_dropouts_and_stragglers_follow_the_clock():
    cfg = small("federation.dropout=0.25", "federation.deadline=1.0", "federation.compute.spread=1.5",
                "federation.rounds=4")
    history = run_history(cfg)
    from engine.federation.clock import draw_profiles

    profiles = draw_profiles(cfg.federation, cfg.seed)
    sizes = [len(s) for s in federated_data(cfg).shares]
    seen_straggler = seen_drop = False
    for record in history.records:
        for t in record.timings:
            if t.status == "dropped":
                seen_drop = True
                assert t.client not in record.clients
            elif t.upload > cfg.federation.deadline:
                assert t.status == "straggler" and t.client not in record.clients
                seen_straggler = True
            else:
                assert t.status == "replied" and t.client in record.clients
        assert record.replied == len(record.clients) == record.sampled - record.dropped - record.straggled
        assert record.round_seconds == (cfg.federation.deadline if record.replied < record.sampled
                                        else max(t.upload for t in record.timings))
    assert seen_drop and seen_straggler
    # a client slower than the deadline on its own never counts, in any round
    never = {k for k, (p, n) in enumerate(zip(profiles, sizes))
             if client_timing(k, p, n, 1, 0, 0, math.inf, False).compute > cfg.federation.deadline}
    assert never, "the test needs at least one client that can never make it"
    assert not never & {k for r in history.records for k in r.clients}


def _replies(cfg: Config, count: int = 4) -> tuple[ArrayRecord, list[Message]]:
    """Hand-made replies of `count` clients of different sizes to the same global weights."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    g = torch.Generator().manual_seed(0)
    shapes = {"a.weight": (5, 3), "a.bias": (5,)}
    sent = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    replies = []
    for k in range(count):
        ins = Message(content=RecordDict({"arrays": ArrayRecord(sent)}), dst_node_id=k + 1,
                      message_type=MessageType.TRAIN)
        ins.metadata.__dict__["_message_id"] = f"m{k}"
        weights = {n: w - 0.1 * torch.randn(w.shape, generator=g) for n, w in sent.items()}
        metrics = MetricRecord({"num-examples": 10 + 7 * k, "partition-id": k})
        replies.append(Message(content=RecordDict({"arrays": ArrayRecord(weights), "metrics": metrics}), reply_to=ins))
    return ArrayRecord(sent), replies


@pytest.mark.parametrize("secure", [False, True])
def test_aggregate_equals_flowers_fedavg_on_the_same_replies(secure):
    cfg = small(f"defence.secure_aggregation={str(secure).lower()}", "federation.fraction=0.34")
    sent, replies = _replies(cfg)
    ours = create_strategy(cfg)
    ours._sent[1] = sent
    ours.outcomes[1] = RoundOutcome(sampled=[1, 2, 3, 4])  # as configure_train leaves it
    arrays, _ = ours.aggregate_train(1, replies)
    flower, _ = FedAvg().aggregate_train(1, replies)
    a, b = arrays.to_torch_state_dict(), flower.to_torch_state_dict()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-4 if secure else 1e-6), name
    assert ours.outcomes[1].secure_bytes > 0 if secure else ours.outcomes[1].secure_bytes == 0


@pytest.mark.parametrize("level", ["example", "client"])
def test_epsilon_over_rounds_matches_opacus_called_directly(level):
    cfg = small(f"defence.dp.level={level}", "defence.dp.noise_multiplier=1.0", "defence.dp.clip=5",
                "federation.fraction=0.25")
    history = run_history(cfg)
    sizes = [len(s) for s in federated_data(cfg).shares]
    f, delta = cfg.federation, cfg.defence.dp.delta
    taken: dict[int, int] = {}
    for r, record in enumerate(history.records, start=1):
        if level == "client":
            accountant = RDPAccountant()
            for _ in range(r):
                accountant.step(noise_multiplier=1.0, sample_rate=f.sampled / f.clients)
            expected = accountant.get_epsilon(delta)
        else:
            for k in record.clients:
                taken[k] = taken.get(k, 0) + 1
            expected = 0.0
            for k, rounds in taken.items():
                accountant = RDPAccountant()
                for _ in range(rounds * local_steps(sizes[k], cfg)):
                    accountant.step(noise_multiplier=1.0, sample_rate=min(f.batch_size, sizes[k]) / sizes[k])
                expected = max(expected, accountant.get_epsilon(delta))
        assert record.epsilon == pytest.approx(expected, rel=1e-9)
    assert history.records[-1].epsilon > history.records[0].epsilon


def test_a_round_aborted_by_secure_aggregation_leaves_the_run_going():
    cfg = small("defence.secure_aggregation=true", "federation.secure_threshold=6", "federation.dropout=0.2",
                "federation.rounds=4")
    history = run_history(cfg)
    assert len(history.records) == 4
    aborted = [r for r in history.records if r.aborted]
    finished = [r for r in history.records if not r.aborted]
    assert aborted and finished
    assert all("threshold" in r.aborted for r in aborted)
    for before, record in zip((None,) + history.records, history.records):
        if record.aborted and before is not None:
            assert record.accuracy == before.accuracy  # no aggregate applied: the model did not move
    assert finished[0].bytes_up > 0


def test_closing_the_generator_stops_the_flower_thread():
    rounds = simulate(small("federation.rounds=5"))
    first = next(rounds)
    assert first.round == 1
    rounds.close()
    assert not [t for t in threading.enumerate() if t.name == "flower-server"]


def test_the_attack_on_a_rounds_view_equals_the_attack_on_the_same_prepared_leak():
    cfg = small("federation.clients=300", "federation.fraction=0.01", "leak.round=2", "attack.iterations=60")
    view = server_view(cfg, 2)
    client = view.clients[0]
    cfg = with_overrides(cfg, [f"leak.client={client}"])
    setup = prepare(cfg)
    # the same client, weights and schedule, leaked by the lab's own leak_update
    batch = setup.clients[0]
    leak = view_leak(view, cfg, client)
    direct = leak_update(leak.model, [(batch.images, batch.labels)], "fedavg", leak.local_steps, leak.local_lr,
                         leak.local_batch_size)
    for name in leak.update:
        assert torch.allclose(leak.update[name], direct.update[name], atol=1e-6)
    scores = []
    for which in (setup.leak, direct):
        step = None
        for step in make_attack(cfg).steps(which, setup.attacker_labels):
            pass
        scores.append(finish(setup, step).evaluation.psnr)
    assert scores[0] == pytest.approx(scores[1], abs=0.05)
    assert math.isfinite(scores[0])


def test_the_aggregate_and_the_replies_of_a_kept_round():
    cfg = small("federation.keep_views=[2]")
    view = next(r for r in run_history(cfg).records if r.round == 2).view
    assert view is not None and len(view.replies) == len(view.clients)
    n = sum(view.sizes)
    for name, agg in view.aggregate.items():
        mean = sum(r.num_examples / n * r.update[name] for r in view.replies)
        assert torch.allclose(agg, mean, atol=1e-6)
    secure = run_history(small("federation.keep_views=[2]", "defence.secure_aggregation=true"))
    hidden = secure.records[1].view
    assert hidden.secure and hidden.replies == ()
    with pytest.raises(ValueError, match="secure aggregation hid the replies"):
        view_leak(hidden, cfg, hidden.clients[0])


@pytest.mark.parametrize("override, message", [
    ("federation.deadline=0", "deadline must be in"),
    ("federation.dropout=1.0", "dropout must be in"),
    ("federation.fraction=0.01", "fraction samples no client"),
    ("federation.secure_threshold=7", "secure_threshold must be at most"),
])
def test_impossible_settings_are_refused_by_the_config(override, message):
    with pytest.raises(ConfigError, match=message):
        small(override)


def test_impossible_runs_are_refused_before_any_round():
    with pytest.raises(ValueError, match="every client needs at least one image"):
        next(simulate(small("federation.clients=4001", "federation.fraction=0.001")))
    with pytest.raises(ValueError, match="no client can reply within the deadline"):
        next(simulate(small("federation.deadline=0.001")))
    with pytest.raises(FederationError, match="secure aggregation needs at least 2"):
        next(simulate(small("federation.fraction=0.09", "defence.secure_aggregation=true")))
    with pytest.raises(FederationError, match="deployment"):
        next(simulate(small("federation.backend=deployment")))


def test_the_ray_backend_says_how_to_install_it_when_missing():
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(FederationError, match="requirements-ray.txt"):
            next(simulate(small("federation.backend=ray")))
    else:
        pytest.skip("Ray is installed here; tests/test_federation_ray.py runs it")
