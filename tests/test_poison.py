"""Poisoned clients: the attackers' rules, the preconditions, and what they do to a small federated run.

Runs are small (10 clients all taking part, one local epoch, 2-3 rounds) so each takes a few seconds.
"""

from __future__ import annotations

import pytest
import torch

from engine.config import Config, ConfigError, with_overrides
from engine.federation import FederationError, run_history
from engine.federation.poison import add_trigger, alie_z, attackers, collude, poison_data, poison_message

RUN = ["model.name=convnet", "federation.clients=10", "federation.fraction=1.0", "federation.rounds=3",
       "federation.local_epochs=1", "federation.batch_size=16", "federation.lr=0.1", "federation.deadline=1e6"]


def run(*extra: str):
    return run_history(with_overrides(Config(), RUN + list(extra)))


def poisoned(attack: str, *extra: str) -> Config:
    return with_overrides(Config(), RUN + [f"federation.attack={attack}", "federation.attackers=0.2", *extra])


# -- the rules ---------------------------------------------------------------------------------------


def test_attackers_are_a_seeded_fifth_of_the_clients():
    cfg = poisoned("sign_flip")
    bad = attackers(cfg)
    assert len(bad) == 2 and bad == attackers(cfg) and bad <= set(range(10))
    assert attackers(with_overrides(cfg, ["federation.clients=50"])) != bad
    assert attackers(with_overrides(cfg, ["federation.attack=none"])) == frozenset()


def test_alie_z_from_n_and_f_as_baruch_et_al():
    # n = 50, f = 10: s = floor(26) - 10 = 16 honest clients to sway, z = Phi^-1(34 / 50) = 0.4677
    assert alie_z(50, 10) == pytest.approx(0.4677, abs=1e-4)
    assert alie_z(50, 24) > alie_z(50, 10) > alie_z(50, 1)  # more colluders may shift further


def test_sign_flip_gaussian_and_boost_on_the_attackers_own_update():
    delta = {"w": torch.tensor([1.0, -2.0])}
    bad = min(attackers(poisoned("sign_flip")))
    good = min(set(range(10)) - attackers(poisoned("sign_flip")))
    assert torch.equal(poison_message(poisoned("sign_flip", "federation.poison.scale=3"), bad, delta)["w"],
                       torch.tensor([-3.0, 6.0]))
    assert poison_message(poisoned("sign_flip"), good, delta) is delta  # honest clients pass untouched
    noise = poison_message(poisoned("gaussian", "federation.poison.sigma=2"), bad,
                           {"w": torch.zeros(20_000)}, torch.Generator().manual_seed(0))["w"]
    assert noise.std().item() == pytest.approx(2.0, rel=0.05)
    # model replacement: gamma = n / f = 10 / 2
    assert torch.equal(poison_message(poisoned("backdoor"), bad, delta)["w"], torch.tensor([5.0, -10.0]))


def test_alie_and_ipm_craft_from_the_honest_updates_of_the_round():
    cfg = poisoned("ipm", "federation.poison.epsilon=0.5")
    bad = sorted(attackers(cfg))
    clients = list(range(10))
    g = torch.Generator().manual_seed(0)
    updates = [{"w": torch.randn(4, generator=g)} for _ in clients]
    honest = torch.stack([updates[c]["w"] for c in clients if c not in bad])
    out = collude(cfg, clients, updates)
    for c in clients:
        if c in bad:
            assert torch.allclose(out[c]["w"], -0.5 * honest.mean(0))  # Eq. (4)
        else:
            assert out[c] is updates[c]
    out = collude(poisoned("alie", "federation.poison.z=1.5"), clients, updates)
    expected = honest.mean(0) - 1.5 * honest.std(0, unbiased=False)  # Eq. (3)
    assert all(torch.allclose(out[c]["w"], expected) for c in bad)


def test_label_flip_and_the_backdoor_trigger_change_only_the_attackers_data():
    cfg = poisoned("label_flip", "federation.poison.source=7", "federation.poison.target=1")
    bad, good = min(attackers(cfg)), min(set(range(10)) - attackers(cfg))
    x, y = torch.rand(6, 1, 28, 28), torch.tensor([7, 1, 7, 3, 0, 7])
    assert torch.equal(poison_data(cfg, bad, x, y)[1], torch.tensor([1, 1, 1, 3, 0, 1]))
    assert poison_data(cfg, good, x, y)[1] is y
    cfg = poisoned("backdoor", "federation.poison.share=0.5", "federation.poison.trigger=4")
    px, py = poison_data(cfg, bad, x, y)
    assert torch.equal(py, torch.tensor([7, 1, 7, 1, 0, 1]))  # every second image, relabelled to the target
    assert torch.all(px[1::2, :, 23:27, 23:27] == 1.0) and torch.equal(px[::2], x[::2])
    assert torch.equal(add_trigger(x, 4)[:, :, :23], x[:, :, :23])  # the trigger touches only its corner


# -- the rules that bind the aggregators, up front ----------------------------------------------------


@pytest.mark.parametrize("override, message", [
    (["federation.strategy=krum", "federation.attackers=0.4"], "krum needs n > 2f + 2: n = 10 sampled, f = 4"),
    (["federation.strategy=bulyan"], "bulyan needs n >= 4f + 3: n = 10 sampled, f = 2"),
    (["federation.strategy=trimmed_mean", "federation.robust.trim=0.1"], "trimmed_mean needs trim >= f / n = 2/10"),
    (["federation.attackers=0.5"], "attackers must be in [0, 0.5)"),
    (["federation.strategy=median", "defence.secure_aggregation=true"], "secure aggregation"),
    (["federation.attack=alie", "defence.secure_aggregation=true"], "read the honest updates"),
])
def test_broken_preconditions_are_refused_with_one_line(override, message):
    with pytest.raises(ConfigError, match=None) as err:
        with_overrides(Config(), RUN + ["federation.attack=sign_flip", "federation.attackers=0.2"] + override)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_backdoor_target_outside_the_data_set_is_refused_before_any_round():
    with pytest.raises(ValueError, match="federation.poison.target 10 is not a class of mnist"):
        run_history(poisoned("backdoor", "federation.poison.target=10"))
    assert issubclass(FederationError, ValueError)


# -- on a small run ------------------------------------------------------------------------------------


def test_sign_flip_breaks_fedavg_and_not_multikrum():
    clean_run = run()
    clean = clean_run.records[-1].accuracy
    attacked = run("federation.attack=sign_flip", "federation.attackers=0.2")
    defended = run("federation.attack=sign_flip", "federation.attackers=0.2", "federation.strategy=multikrum")
    assert attacked.records[-1].accuracy <= 0.15 < clean - 0.3
    assert defended.records[-1].accuracy >= clean - 0.1
    # the lab's measurement of each step against the honest clients' own FedAvg (none without an attacker)
    assert clean_run.records[-1].honest_cosine is None
    assert all(r.honest_cosine < 0 for r in attacked.records)  # FedAvg steps backwards
    assert all(r.honest_cosine > 0.999 for r in defended.records)  # MultiKrum applies exactly the honest mean
    bad = attackers(poisoned("sign_flip"))
    for record in defended.records:  # MultiKrum drops exactly the two flippers each round
        assert {c for c, w in record.kept if w == 0.0} == bad


def test_same_seed_same_poisoned_run():
    cfg = ["federation.attack=alie", "federation.attackers=0.2", "federation.strategy=median", "federation.rounds=2"]
    first, second = run(*cfg), run(*cfg)
    assert first.to_dict() == second.to_dict()
    assert all(r.kept for r in first.records)


def test_the_backdoor_climbs_under_fedavg_while_clean_accuracy_holds_and_norm_clipping_lowers_it():
    pretrained = ["federation.pretrain=3"]  # model replacement aims at a model that has learnt
    backdoor = [*pretrained, "federation.attack=backdoor", "federation.attackers=0.2", "federation.poison.start=2"]
    clean = run(*pretrained).records[-1].accuracy
    plain = run(*backdoor)
    clipped = run(*backdoor, "federation.strategy=norm_clip")
    before, after = plain.records[0].attack_success, plain.records[-1].attack_success
    assert before < 0.1 and after > 0.6  # round 1 is honest; from round 2 the trigger takes over
    assert plain.records[-1].accuracy > clean - 0.05  # ... while the clean accuracy barely moves
    assert clipped.records[-1].attack_success < 0.1
    assert all(r.attack_success is not None for r in plain.records)


def test_pretraining_starts_the_run_from_a_model_that_has_learnt():
    scratch, pretrained = run("federation.rounds=1"), run("federation.rounds=1", "federation.pretrain=2")
    assert scratch.initial_accuracy < 0.2 < 0.7 < pretrained.initial_accuracy
