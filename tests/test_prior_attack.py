"""The VAE-prior attack: it beats the pixel attacks where they fail, and a wrong prior shows."""

from __future__ import annotations

import json
import math

import pytest
import torch

from engine.attacks import PriorSettings, VAEPriorAttack, create_attack, posterior_spread
from engine.cli import main as cli
from engine.config import Config, with_overrides
from engine.experiment import finish, make_attack, prepare, prior_check, prior_name
from engine.labels import counts_to_labels, label_candidates
from engine.metrics import closer_to_victim
from engine.priors import load_prior


@pytest.fixture(scope="module")
def mnist_prior():
    return load_prior("mnist")


def setup_for(overrides: list[str]):
    return prepare(with_overrides(Config(), overrides))


def test_prior_beats_inverting_gradients_at_batch_16(mnist_prior):
    """The issue's oracle test: on one bundled batch of 16 digits, the prior's MAP is far closer than IG."""
    config = with_overrides(Config(), ["data.batch_size=16", "seed=1"])
    setup = prepare(config)
    prior = create_attack("vae_prior", prior=mnist_prior, iterations=150, refine=50, restarts=1)
    ours = finish(setup, prior.run(setup.leak)).evaluation
    ig = finish(setup, create_attack("ig", iterations=200).run(setup.leak)).evaluation
    assert ours.label_accuracy == 1.0
    assert ours.psnr > ig.psnr + 4, (ours.psnr, ig.psnr)


def test_wrong_prior_runs_and_scores_lower(mnist_prior):
    """A prior is an assumption: the MNIST prior on Fashion-MNIST does worse than Fashion's own."""
    setup = setup_for(["data.dataset=fashion_mnist", "data.batch_size=4", "seed=2"])
    scores = {}
    for name in ("fashion_mnist", "mnist"):
        attack = create_attack("vae_prior", prior=name, iterations=120, refine=0, restarts=1, labels="true")
        scores[name] = finish(setup, attack.run(setup.leak, setup.labels)).evaluation.psnr
    assert scores["mnist"] < scores["fashion_mnist"] - 1.5, scores


def test_steps_stream_then_end_with_the_map_and_a_spread(mnist_prior):
    setup = setup_for(["data.batch_size=4", "seed=3"])
    attack = VAEPriorAttack(PriorSettings(iterations=20, refine=5, restarts=2), mnist_prior)
    steps = list(attack.steps(setup.leak))
    assert [s.stage for s in steps[:2]] == ["dummy", "update"]
    assert {s.restart for s in steps[:-1]} == {0, 1}
    done = steps[-1]
    assert done.done and steps[:-1] and not any(s.done for s in steps[:-1])
    assert done.images.shape == setup.images.shape and 0 <= done.images.min() and done.images.max() <= 1
    assert done.spread is not None and done.spread.shape == setup.images.shape
    assert float(done.spread.max()) > 0  # two restarts from different starts disagree somewhere
    assert math.isfinite(done.loss) and done.loss == min(s.loss for s in steps[:-1] if s.stage == "update")


def test_closing_the_stream_mid_run_stops_it(mnist_prior):
    setup = setup_for(["data.batch_size=2"])
    steps = VAEPriorAttack(PriorSettings(iterations=1000, restarts=3), mnist_prior).steps(setup.leak)
    for _, step in zip(range(5), steps):
        pass
    steps.close()
    with pytest.raises(StopIteration):
        next(steps)


def test_time_limit_is_shared_by_the_restarts(mnist_prior):
    setup = setup_for(["data.batch_size=4"])
    done = VAEPriorAttack(PriorSettings(iterations=100000, restarts=2, time_limit=1.5), mnist_prior).run(setup.leak)
    assert done.seconds < 4
    assert "time limit" in done.reason


def test_prior_samples_make_label_counts_exact(mnist_prior):
    """Counts from the bias gradient with the mean softmax estimated on prior samples (FINDINGS)."""
    right = 0
    for seed in range(10):
        setup = setup_for([f"seed={seed}", "data.batch_size=16"])
        probes = mnist_prior.vae.sample(512, torch.Generator().manual_seed(0))
        guess = counts_to_labels(label_candidates(setup.leak, limit=1, probes=probes)[0])
        right += torch.equal(guess, setup.labels.sort().values)
    assert right >= 9


def test_posterior_spread_matches_images_of_one_label_before_comparing():
    a = torch.zeros(3, 1, 2, 2)
    a[1] += 1.0
    swapped = a[[1, 0, 2]]  # the same images, the first two swapped (both of label 5)
    labels = torch.tensor([5, 5, 7])
    assert float(posterior_spread([a, swapped], 0, labels).max()) == 0
    other = a.clone()
    other[2] += 0.5
    assert torch.allclose(posterior_spread([a, other], 0, labels)[2], torch.full((1, 2, 2), 0.25))


def test_closer_to_victim_tells_recovered_from_made_up():
    victims = torch.rand(2, 1, 4, 4)
    training = torch.rand(5, 1, 4, 4)
    recon = torch.stack([victims[0], training[3]])  # one recovered, one a training image
    assert closer_to_victim(recon, victims, training).tolist() == [True, False]


def test_config_names_the_prior_and_faces_have_none():
    assert prior_name(with_overrides(Config(), ["attack.name=vae_prior"])) == "mnist"
    faces = with_overrides(Config(), ["attack.name=vae_prior", "data.dataset=lfw_faces"])
    with pytest.raises(ValueError, match="no image prior is trained on lfw_faces"):
        make_attack(faces)
    wrong = with_overrides(faces, ["attack.prior=mnist"])
    assert make_attack(wrong).prior.name == "mnist"
    with pytest.raises(ValueError, match="joint"):
        with_overrides(Config(), ["attack.name=vae_prior", "attack.labels=joint"])


def test_vae_prior_round_trips_through_the_command_line(tmp_path):
    out = tmp_path / "run"
    code = cli(["run", "--set", "attack.name=vae_prior", "--set", "data.batch_size=4", "--set", "attack.iterations=30",
                "--set", "attack.refine=5", "--set", "attack.restarts=2", "--out", str(out)])
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["attack"]["name"] == "vae_prior" and saved["attack"]["refine"] == 5
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["attack"] == "vae_prior" and metrics["prior"] == "mnist"
    assert 0 <= metrics["closer_to_victim"] <= 1 and metrics["nearest_training_mse"] > 0
    assert (out / "prior.png").stat().st_size > 0 and (out / "reconstruction.png").stat().st_size > 0
    again = tmp_path / "again"
    assert cli(["run", str(out / "config.json"), "--out", str(again)]) == 0
    assert json.loads((again / "config.json").read_text()) == saved


def test_prior_check_reports_the_nearest_training_images(mnist_prior):
    config = with_overrides(Config(), ["attack.name=vae_prior", "data.batch_size=2", "attack.iterations=10",
                                       "attack.refine=0"])
    setup = prepare(config)
    result = finish(setup, make_attack(config, prior=mnist_prior).run(setup.leak))
    check = prior_check(setup, result)
    assert check["nearest"].shape == result.reconstruction.shape
    assert check["prior"] == "mnist" and 0 <= check["closer_to_victim"] <= 1


def test_feature_refinement_leaves_the_decoders_range_and_gets_closer(mnist_prior):
    """Eq. (4): freeing the decoder's feature map beats the latent MAP alone on the same leak."""
    setup = setup_for(["data.batch_size=4", "seed=4"])
    scores = {}
    for refine in (0, 150):
        attack = create_attack("vae_prior", prior=mnist_prior, iterations=200, refine=refine, restarts=1)
        scores[refine] = finish(setup, attack.run(setup.leak)).evaluation.psnr
    assert scores[150] > scores[0] + 2, scores


def test_prior_attack_inverts_a_fedavg_aggregate_of_two_clients(mnist_prior):
    """Multi-client FedAvg: the dummies are split among the clients and their local steps unrolled."""
    setup = setup_for(["data.batch_size=2", "data.clients=2", "leak.protocol=fedavg", "leak.local_steps=2", "seed=5"])
    attack = create_attack("vae_prior", prior=mnist_prior, iterations=100, refine=30, restarts=1, labels="true")
    result = finish(setup, attack.run(setup.leak, setup.labels))
    assert result.reconstruction.shape == setup.images.shape
    assert result.evaluation.psnr > 12, result.evaluation  # (measured 15.1; grey is ~9) labels from a FedAvg delta are shakier: given here


def test_a_new_latent_cycle_starts_from_the_best_codes_reencoded(mnist_prior):
    """Eq. (3b): the first step of cycle 2 decodes mu(D(z_best)) of cycle 1's lowest-loss codes."""
    setup = setup_for(["data.batch_size=4", "seed=3"])
    attack = VAEPriorAttack(PriorSettings(iterations=20, cycles=2, refine=0, restarts=1), mnist_prior)
    updates = [s for s in attack.steps(setup.leak) if s.stage == "update"]
    first_cycle = [s for s in updates if s.iteration < 10]  # progress 10/20 = 1/2 opens cycle 2
    best = min(first_cycle, key=lambda s: s.loss)
    vae = mnist_prior.vae
    with torch.no_grad():
        expected = vae.decode(vae.encode(best.images)[0])
    restart = next(s for s in updates if s.iteration == 10)
    assert torch.allclose(restart.images, expected, atol=1e-5)
    assert restart.loss > best.loss  # a step back for the moment, before the new cycle goes further
