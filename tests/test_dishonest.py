"""The dishonest server (engine/server): imprint and trap layers, their readout, and the clients' checks."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from engine.cli import main
from engine.config import Config, ConfigError, with_overrides
from engine.data import load_dataset, select_batch, to_model_input
from engine.defences.secure_aggregation import flatten, secure_sum, unflatten
from engine.experiment import finish, make_attack, prepare
from engine.leakage import leak_update
from engine.metrics import psnr
from engine.models import MODELS, create_model, train_model
from engine.server import (
    ModelRefused, architecture, disguise, expected_exact, imprint_model, inserted_parameters, read_imprint, read_trap,
    trap_model, vet_model,
)


@pytest.fixture(scope="module")
def public() -> torch.Tensor:
    return to_model_input(load_dataset("mnist", "train").images[:1000], 1, 28)


@pytest.fixture(scope="module")
def test_set():
    return load_dataset("mnist", "test")


def batch(test_set, size: int, seed: int):
    b = select_batch(test_set, size, seed)
    return to_model_input(b.images, 1, 28), b.labels


def bins_of(public: torch.Tensor, images: torch.Tensor, bins: int) -> torch.Tensor:
    """The bin each image falls in, by the same quantiles the server used."""
    from engine.server.imprint import bin_edges

    return torch.bucketize(images.flatten(1).mean(1), bin_edges(public, bins), right=True) - 1


def test_imprint_gives_back_every_image_alone_in_its_bin_exactly(public, test_set):
    for seed in range(3):
        x, y = batch(test_set, 64, seed)
        model = imprint_model(create_model("convnet", seed=seed), public, bins=256, batch=64)
        readout = read_imprint(leak_update(model, [(x, y)]))
        bins = bins_of(public, x, 256)
        alone = [j for j in range(64) if int((bins == bins[j]).sum()) == 1]
        assert len(alone) >= 40  # 256 bins: about 50 of 64 alone
        for j in alone:
            best = psnr(readout.images, x[j : j + 1].expand_as(readout.images)).max()
            assert best > 60, f"image {j}, alone in its bin, came back at {best:.1f} dB"


def test_imprint_exact_count_follows_the_theory_over_seeds(public, test_set):
    for bins in (128, 1024):
        counts = []
        for seed in range(8):
            x, y = batch(test_set, 64, seed)
            model = imprint_model(create_model("mlp", seed=seed), public, bins=bins, batch=64)
            readout = read_imprint(leak_update(model, [(x, y)]))
            counts.append(sum(float(psnr(readout.images, x[j : j + 1].expand_as(readout.images)).max()) > 60
                              for j in range(64)))
        mean, theory = sum(counts) / len(counts), expected_exact(64, bins)
        assert abs(mean - theory) < 0.12 * 64, f"{bins} bins: {mean} exact on average, theory {theory:.1f}"


def test_secure_sum_gives_the_same_images_as_the_plain_sum(public, test_set):
    x, y = batch(test_set, 64, 1)
    model = imprint_model(create_model("lenet", seed=1), public, bins=2048, batch=64)
    clients = [(x[8 * k : 8 * k + 8], y[8 * k : 8 * k + 8]) for k in range(8)]
    plain = leak_update(model, clients)
    messages = [{n: u / 8 for n, u in leak_update(model, [c]).update.items()} for c in clients]
    total = unflatten(secure_sum([flatten(m) for m in messages], threshold=8, frac_bits=24).total, messages[0])
    a, b = read_imprint(plain), read_imprint(replace(plain, update=total))
    assert torch.equal(a.rows.sort().values, b.rows.sort().values)  # the same bins held images

    def exact(readout) -> set[int]:
        return {j for j in range(64) if float(psnr(readout.images, x[j : j + 1].expand_as(readout.images)).max()) > 60}

    assert len(exact(a)) >= 56 and exact(a) == exact(b)  # the same private images come back exactly


def test_trap_rows_that_one_image_switched_on_give_it_back(test_set):
    x, y = batch(test_set, 64, 0)
    model = trap_model(create_model("convnet", seed=0), (1, 28, 28), rows=1024, scale=1.5, seed=0, batch=64)
    on = model.front.rows(x.flatten(1)) > 0  # (B, k)
    caught = on[:, on.sum(0) == 1].any(1)  # images alone in some row
    readout = read_trap(leak_update(model, [(x, y)]))
    exact = [j for j in range(64) if float(psnr(readout.images, x[j : j + 1].expand_as(readout.images)).max()) > 60]
    assert 20 <= len(exact) <= int(caught.sum())


def test_inserted_layer_has_2kN_parameters(public):
    model = imprint_model(create_model("lenet"), public, bins=1024)
    extra = sum(p.numel() for p in model.front.parameters())
    assert extra == inserted_parameters(1024, (1, 28, 28)) == 2 * 1024 * 784 + 1024 + 784


def test_vetting_flags_every_malicious_model_and_passes_honest_ones(public, test_set):
    x, _ = batch(test_set, 8, 3)
    for name in MODELS:
        for seed in range(2):
            for steps in (0, 20):
                honest = create_model(name, seed=seed)
                train_model(honest, public[:256], load_dataset("mnist", "train").labels[:256], steps, seed=seed)
                verdict = vet_model(honest, create_model(name, seed=seed + 7), x)
                assert not verdict.refused, f"{name} seed {seed} trained {steps}: {verdict}"
        promised = create_model(name)
        imprinted = imprint_model(create_model(name), public, bins=512)
        trapped = trap_model(create_model(name), (1, 28, 28), rows=512, scale=1.5)
        v_imprint, v_trap = vet_model(imprinted, promised, x), vet_model(trapped, promised, x)
        assert v_imprint.failed("architecture") and v_imprint.failed("identical_rows") and v_imprint.failed("sorted_biases")
        assert v_trap.failed("architecture") and v_trap.failed("rarely_active")
        # judged against its own shape, only the weights give the layers away
        assert vet_model(imprinted, architecture(imprinted), x).failed("identical_rows")
        assert vet_model(trapped, architecture(trapped), x).failed("rarely_active")


def test_a_disguised_imprint_passes_the_checks_and_still_leaks(public, test_set):
    x, y = batch(test_set, 64, 2)
    model = disguise(imprint_model(create_model("lenet"), public, bins=1024, batch=64), public, seed=0)
    assert not vet_model(model, architecture(model), x[:8]).refused
    readout = read_imprint(leak_update(model, [(x, y)]))
    exact = sum(float(psnr(readout.images, x[j : j + 1].expand_as(readout.images)).max()) > 60 for j in range(64))
    assert exact >= 0.8 * expected_exact(64, 1024)


def test_bad_input_is_one_clear_error(public):
    with pytest.raises(ValueError, match="at least as many bins as images"):
        imprint_model(create_model("lenet"), public, bins=16, batch=64)
    with pytest.raises(ValueError, match="layer budget"):
        imprint_model(create_model("lenet"), public, bins=50_000)
    with pytest.raises(ValueError, match="model's input shape"):
        imprint_model(create_model("lenet"), public[:, :, :20, :20], bins=64)
    with pytest.raises(ConfigError, match="leak.bins must be at least"):
        with_overrides(Config(), ["leak.server=imprint", "data.batch_size=64", "leak.bins=32"])
    with pytest.raises(ConfigError, match="set leak.server=imprint"):
        with_overrides(Config(), ["attack.name=imprint"])
    faces = to_model_input(load_dataset("lfw_faces", "test").images, 1, 28)
    with pytest.raises(ValueError, match="cannot hide here"):
        disguise(imprint_model(create_model("lenet"), faces, bins=64), faces)


def test_experiment_through_secure_aggregation_and_a_refusal():
    config = with_overrides(Config(), [
        "leak.server=imprint", "attack.name=imprint", "data.batch_size=8", "data.clients=8", "leak.bins=2048",
        "defence.secure_aggregation=true",
    ])
    setup = prepare(config)
    step = list(make_attack(config).steps(setup.leak, setup.attacker_labels))[-1]
    result = finish(setup, step)
    assert result.evaluation.label_accuracy is None  # the imprint reads no labels
    assert sum(p > 60 for p in result.evaluation.per_image_psnr) >= 56
    with pytest.raises(ModelRefused, match="refused the server's model"):
        prepare(with_overrides(config, ["leak.vet=true"]))


def test_cli_run_writes_the_server_metrics(tmp_path, capsys):
    out = tmp_path / "imprint"
    code = main(["run", "--set", "leak.server=imprint", "--set", "attack.name=imprint", "--set", "data.batch_size=64",
                 "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["exact_images"] >= 55 and metrics["rows_used"] <= 64
    assert metrics["expected_exact"] == pytest.approx(64 * (1 - 1 / 1024) ** 63)
    assert metrics["inserted_parameters"] == 2 * 1024 * 784 + 1024 + 784
    refused = tmp_path / "refused"
    code = main(["run", "--set", "leak.server=trap", "--set", "attack.name=trap", "--set", "data.batch_size=8",
                 "--set", "leak.vet=true", "--out", str(refused)])
    assert code == 2 and not refused.exists()
    assert "error: 1 of 1 client(s) refused the server's model" in capsys.readouterr().err
