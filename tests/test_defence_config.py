"""The `defence` config section end to end: what the server sees under it, what metrics.json says,
the sweep's files, and what the defence costs a small FedAvg training run."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest
import torch
from PIL import Image

from engine.cli import main
from engine.config import Config, ConfigError, DefenceConfig, from_json, to_json, with_overrides
from engine.defences import defended_round, dp_aggregate
from engine.utility import Training, fedavg_accuracy
from engine.experiment import prepare
from engine.leakage import client_update, leak_update, model_parameters
from engine.models import create_model

FAST = ["attack.iterations=100"]


def _clients(mnist, k: int = 3, b: int = 2):
    return [(mnist.images[i * b : (i + 1) * b], mnist.labels[i * b : (i + 1) * b]) for i in range(k)]


# config


def test_defence_section_round_trips_and_defaults_to_no_defence():
    assert not Config().defence.active
    cfg = with_overrides(Config(), [
        "defence.dp.noise_multiplier=0.5", "defence.dp.clip=2", "defence.dp.level=client", "defence.dp.delta=1e-6",
        "defence.compression.method=top_k", "defence.compression.fraction=0.2", "defence.compression.bits=8",
        "defence.secure_aggregation=true",
    ])
    assert from_json(to_json(cfg)) == cfg and cfg.defence.active
    assert cfg.defence.dp.clip == 2.0 and cfg.defence.dp.level == "client" and cfg.defence.secure_aggregation is True


@pytest.mark.parametrize("override, key", [
    ("defence.dp.noise_multiplier=-1", "defence.dp.noise_multiplier"),
    ("defence.dp.clip=0", "defence.dp.clip"),
    ("defence.dp.level=batch", "defence.dp.level"),
    ("defence.dp.delta=1", "defence.dp.delta"),
    ("defence.compression.method=zip", "defence.compression.method"),
    ("defence.compression.fraction=1.5", "defence.compression.fraction"),
    ("defence.compression.bits=32", "defence.compression.bits"),
    ("defence.secure_aggregation=maybe", "defence.secure_aggregation"),
    ("defence.noise=1", "defence.noise"),
    ("defence.dp.noise_multiplier=1e308", "defence.dp.noise_multiplier"),  # Opacus's accountant overflowed
    ("defence.dp.noise_multiplier=1e-300", "defence.dp.noise_multiplier"),  # ...or divided by zero
    ("defence.dp.clip=1e308", "defence.dp.clip"),  # the noise sigma * C became inf
])
def test_bad_defence_values_are_rejected_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        with_overrides(Config(), [override])


# the defended round


def test_no_defence_gives_the_plain_aggregate(mnist, lenet):
    clients = _clients(mnist)
    plain = leak_update(lenet, clients).update
    defended = defended_round(lenet, clients, DefenceConfig())
    assert all(torch.equal(plain[k], defended[k]) for k in plain)


def test_client_level_dp_is_dp_aggregate_split_around_the_sum(mnist, lenet):
    """Oracle: clip, sum, noise in `defended_round` equals `dp_aggregate` draw for draw."""
    clients = _clients(mnist)
    defence = with_overrides(Config(), ["defence.dp.noise_multiplier=0.3", "defence.dp.level=client"]).defence
    params = model_parameters(lenet)
    messages = [client_update(lenet, params, x, y) for x, y in clients]
    expected = dp_aggregate(messages, 0.3, 1.0, torch.Generator().manual_seed(5))
    got = defended_round(lenet, clients, defence, generator=torch.Generator().manual_seed(5))
    assert all(torch.allclose(expected[k], got[k], atol=1e-6) for k in expected)


def test_secure_aggregation_hands_the_server_the_same_sum(mnist, lenet):
    clients = _clients(mnist)
    plain = leak_update(lenet, clients).update
    secure = defended_round(lenet, clients, DefenceConfig(secure_aggregation=True))
    assert max(float((plain[k] - secure[k]).abs().max()) for k in plain) <= 3 * 2.0**-17  # n half-steps of 2^-16


def test_every_defence_together_under_fedavg(mnist, lenet):
    """Example-level DP over E local steps, compression, then secure aggregation: shapes kept, update changed."""
    clients = _clients(mnist, k=2, b=4)
    defence = with_overrides(Config(), [
        "defence.dp.noise_multiplier=0.5", "defence.compression.method=top_k", "defence.secure_aggregation=true",
    ]).defence
    plain = leak_update(lenet, clients, "fedavg", local_steps=3, local_batch_size=2).update
    got = defended_round(lenet, clients, defence, "fedavg", 3, 0.1, 2, torch.Generator().manual_seed(0))
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in plain.items()}
    assert not torch.allclose(got["fc.weight"], plain["fc.weight"])
    kept = sum(int((v != 0).sum()) for v in got.values()) / sum(v.numel() for v in got.values())
    assert kept <= 2 * 0.1 + 0.01  # two clients' top 10% each, at most


def test_example_level_epsilon_counts_fedavg_local_steps():
    from engine.defences import round_epsilon

    dp = with_overrides(Config(), ["defence.dp.noise_multiplier=1"]).defence.dp
    one, three = round_epsilon(dp, 1, 500, steps=1), round_epsilon(dp, 1, 500, steps=3)
    assert 0 < one < three
    client = replace(dp, level="client")
    assert round_epsilon(client, 1, 500, steps=3) == round_epsilon(client, 64, 10, steps=1)  # q = 1, one step


# `python -m engine run` with a defence


def test_strong_noise_stops_dlg_and_metrics_carry_epsilon(tmp_path):
    out = tmp_path / "noisy"
    args = ["run", "--set", FAST[0], "--set", "defence.dp.noise_multiplier=0.1", "--out", str(out)]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["psnr"] < 12  # DLG at batch 1 drowned
    assert metrics["epsilon"] > 0 and metrics["delta"] == 1e-5
    assert "compression_ratio" not in metrics


def test_compression_ratio_in_metrics(tmp_path):
    out = tmp_path / "quantised"
    assert main(["run", "--set", FAST[0], "--set", "defence.compression.method=quantise", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 7 < metrics["compression_ratio"] < 8  # 4 bits of 32, plus each tensor's min and max
    assert "epsilon" not in metrics


def test_secure_aggregation_alone_does_not_stop_the_attack():
    """The sum still leaks: the attack on it does as well as on the plain sum."""
    from engine.experiment import run

    plain = run(with_overrides(Config(), FAST + ["data.clients=2"])).evaluation.psnr
    secure = run(with_overrides(Config(), FAST + ["data.clients=2", "defence.secure_aggregation=true"])).evaluation.psnr
    assert plain > 20 and abs(secure - plain) < 3


def test_secure_aggregation_of_one_client_is_refused(tmp_path, capsys):
    assert main(["run", "--set", "defence.secure_aggregation=true", "--out", str(tmp_path / "one")]) == 2
    assert "at least 2 clients" in capsys.readouterr().err


# privacy against utility


def test_sweep_writes_csv_and_png_with_psnr_falling_as_noise_rises(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--set", FAST[0], "--set", "defence.dp.clip=100", "--param", "defence.dp.noise_multiplier",
            "--values", "0,1e-4,1e-1", "--out", str(out)]
    assert main(args) == 0
    assert "3/3" in capsys.readouterr().err  # the progress bar, one tick per value
    with (out / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["value"] for r in rows] == ["0", "1e-4", "1e-1"]
    psnr = [float(r["psnr"]) for r in rows]
    assert psnr[0] > 25 and psnr[0] > psnr[1] > psnr[2] and psnr[2] < 12
    assert rows[0]["epsilon"] == "" and float(rows[1]["epsilon"]) > float(rows[2]["epsilon"]) > 0
    with Image.open(out / "sweep.png") as image:
        assert image.size[0] > 300 and image.size[1] > 200


def test_sweep_rejects_a_bad_value_before_any_work(tmp_path, capsys):
    args = ["sweep", "--param", "defence.dp.level", "--values", "example,batch", "--out", str(tmp_path / "s")]
    assert main(args) == 2
    assert "defence.dp.level" in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_fedavg_learns_and_heavy_noise_costs_accuracy():
    training = Training(rounds=8, clients=3)
    plain = fedavg_accuracy(DefenceConfig(), training)
    noisy = fedavg_accuracy(with_overrides(Config(), ["defence.dp.noise_multiplier=10"]).defence, training)
    assert len(plain.accuracies) == 8 and plain.epsilon is None
    assert plain.accuracy > 0.3  # chance is 0.1
    assert noisy.accuracy < plain.accuracy - 0.15 and 0 < noisy.epsilon < 1
