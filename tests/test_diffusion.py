"""The diffusion prior: the shipped denoiser loads with the VAE store's checks, draws its data set,
and the diffusion_prior attack beats the pixel attacks, gives posterior samples, and shows a wrong prior."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.attacks import DiffusionPriorAttack, DiffusionSettings, create_attack
from engine.attacks.diffusion import MAX_BATCH
from engine.cli import main as cli
from engine.config import Config, ConfigError, with_overrides
from engine.data import load_dataset
from engine.experiment import finish, make_attack, prepare, prior_check
from engine.priors import (
    Diffusion, PriorError, UNet, diffusion_path, load_diffusion, load_prior, save_diffusion,
)
from engine.priors.store import PRIORS_DIR


@pytest.fixture(scope="module")
def mnist_diffusion():
    return load_diffusion("mnist")


@pytest.fixture(scope="module")
def mnist_vae():
    return load_prior("mnist")


def tiny_model() -> Diffusion:
    torch.manual_seed(0)
    return Diffusion(UNet(1, 28, base=8, patch=2), timesteps=50)


# --- the store ---------------------------------------------------------------------------------------


def test_shipped_diffusion_priors_exist_small_frozen_with_cards(mnist_diffusion) -> None:
    for name in ("mnist", "fashion_mnist"):
        path = diffusion_path(name)
        assert path.is_file() and path.stat().st_size < 20e6, path
        assert (PRIORS_DIR / f"{name}_diffusion.md").is_file()
        assert (PRIORS_DIR / f"{name}_diffusion_samples.png").is_file()
    model = mnist_diffusion.model
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert mnist_diffusion.card["train_images"] > 40000 and "command" in mnist_diffusion.card
    assert "mnist" in repr(mnist_diffusion)


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = tiny_model()
    save_diffusion(diffusion_path("mnist", tmp_path), model, {"steps": 3}, "mnist")
    loaded = load_diffusion("mnist", root=tmp_path)
    x = torch.rand(2, 1, 28, 28)
    t = torch.tensor([3, 40])
    assert torch.equal(loaded.model.unet(x, t), model.eval().unet(x, t))
    assert loaded.model.timesteps == 50 and loaded.card == {"steps": 3}


def test_missing_file_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(PriorError, match="missing; make it with `python scripts/train_diffusion.py --data mnist`"):
        load_diffusion("mnist", root=tmp_path)


def test_unknown_name_lists_the_known() -> None:
    with pytest.raises(PriorError, match="known priors: mnist, fashion_mnist"):
        load_diffusion("cifar10")


def test_truncated_file(tmp_path: Path) -> None:
    path = diffusion_path("mnist", tmp_path)
    save_diffusion(path, tiny_model(), {}, "mnist")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PriorError, match="not a readable torch file"):
        load_diffusion("mnist", root=tmp_path)


def test_a_vae_file_is_not_a_diffusion_prior(tmp_path: Path) -> None:
    diffusion_path("mnist", tmp_path).write_bytes((PRIORS_DIR / "mnist.pt").read_bytes())
    with pytest.raises(PriorError, match="not a gil-ddpm/1 diffusion prior .*'gil-vae/1'"):
        load_diffusion("mnist", root=tmp_path)


def test_a_file_of_another_data_set_is_refused(tmp_path: Path) -> None:
    save_diffusion(diffusion_path("mnist", tmp_path), tiny_model(), {}, "fashion_mnist")
    with pytest.raises(PriorError, match="holds a diffusion prior for 'fashion_mnist', not 'mnist'"):
        load_diffusion("mnist", root=tmp_path)


def test_state_dict_shape_mismatch_names_the_tensor(tmp_path: Path) -> None:
    path = diffusion_path("mnist", tmp_path)
    save_diffusion(path, tiny_model(), {}, "mnist")
    blob = torch.load(path, weights_only=True)
    blob["config"]["base"] = 16
    torch.save(blob, path)
    with pytest.raises(PriorError, match="tensor '.*' has shape"):
        load_diffusion("mnist", root=tmp_path)


def test_the_vae_still_loads_beside_a_broken_diffusion_file(tmp_path: Path) -> None:
    diffusion_path("mnist", tmp_path).write_text("not torch")
    with pytest.raises(PriorError):
        load_diffusion("mnist", root=tmp_path)
    assert load_prior("mnist").name == "mnist"


# --- what it draws -----------------------------------------------------------------------------------


def nearest_rms(queries: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    return torch.cdist(queries.flatten(1), pool.flatten(1)).min(1).values / math.sqrt(queries[0].numel())


def test_samples_lie_near_the_training_digits(mnist_diffusion) -> None:
    """Samples from pure noise lie about half as far from their nearest MNIST training image as noise does
    (the floor). This under-trained model draws strokes rather than clean digits (its card says so): the
    nearest-image distance is what it can claim, not a classifier's accuracy."""
    samples = mnist_diffusion.model.sample(32, steps=25, generator=torch.Generator().manual_seed(0))
    digits = load_dataset("mnist", "train").images
    to_digits = nearest_rms(samples, digits)
    noise = nearest_rms(torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0)), digits)
    assert float(to_digits.mean()) < 0.6 * float(noise.mean()), (to_digits.mean(), noise.mean())
    assert float(samples.mean()) < 0.35  # a dark background with bright strokes, as MNIST (noise: 0.5)


def test_denoising_from_the_middle_redraws_unseen_digits(mnist_diffusion) -> None:
    """Test digits (never trained on) noised to t=200 come back far closer than the noised input."""
    x = load_dataset("mnist", "test").images[:32]
    generator = torch.Generator().manual_seed(0)
    back = mnist_diffusion.model.reconstruct(x, 200, 20, generator)
    psnr = -10 * torch.log10((back - x).pow(2).flatten(1).mean(1)).mean()
    assert float(psnr) > 14, float(psnr)


def test_ddim_schedule_ends_at_the_clean_image() -> None:
    model = tiny_model()
    assert model.schedule(20, 5) == [20, 15, 10, 5, 0, -1]
    assert model.schedule(3, 10) == [3, 2, 1, 0, -1]


# --- the attack -----------------------------------------------------------------------------------------


def setup_for(overrides: list[str]):
    return prepare(with_overrides(Config(), overrides))


def test_diffusion_prior_beats_inverting_gradients_at_batch_16(mnist_vae, mnist_diffusion) -> None:
    setup = setup_for(["data.batch_size=16", "seed=1"])
    attack = create_attack("diffusion_prior", prior=mnist_vae, diffusion=mnist_diffusion, iterations=120,
                           refine=30, sampler_steps=15, rounds=4)
    ours = finish(setup, attack.run(setup.leak)).evaluation
    ig = finish(setup, create_attack("ig", iterations=200).run(setup.leak)).evaluation
    assert ours.label_accuracy == 1.0
    assert ours.psnr > ig.psnr + 4, (ours.psnr, ig.psnr)


def test_rounds_redraw_what_one_pass_cannot(mnist_vae, mnist_diffusion) -> None:
    """Eq. (5): from the same short VAE search, rounds of re-noising and guided denoising end nearer the
    batch than one pass down the chain, and their start anneals from t_start to t_end."""
    setup = setup_for(["data.batch_size=8", "seed=5", "model.name=convnet", "model.width=32"])
    scores = {}
    for rounds in (1, 8):  # measured: 16.6 dB after one round, 20.4 after eight
        settings = DiffusionSettings(iterations=100, refine=0, sampler_steps=15, rounds=rounds, labels="true")
        attack = DiffusionPriorAttack(settings, mnist_diffusion, mnist_vae)
        scores[rounds] = finish(setup, attack.run(setup.leak, setup.labels)).evaluation.psnr
    assert scores[8] > scores[1] + 2, scores
    assert [attack.round_start(p) for p in (0, 0.5, 1)] == [350, 225, 100]


def test_the_late_rounds_mean_is_nearer_the_batch_than_the_lowest_loss_images(mnist_vae, mnist_diffusion) -> None:
    """Eq. (6): the same chain (no time limit, so the rounds do not depend on the answer), answered by the
    mean of its last four round ends rather than by its lowest-loss images, is nearer the batch."""
    setup = setup_for(["data.batch_size=8", "seed=6", "model.name=convnet", "model.width=32"])
    scores = {}
    for average in (0.0, 0.5):  # measured: 32.3 dB for the lowest-loss images, 33.2 for the mean
        settings = DiffusionSettings(iterations=100, refine=0, sampler_steps=15, rounds=8, labels="true",
                                     average=average)
        attack = DiffusionPriorAttack(settings, mnist_diffusion, mnist_vae)
        scores[average] = finish(setup, attack.run(setup.leak, setup.labels)).evaluation.psnr
    assert scores[0.5] > scores[0.0] + 0.5, scores
    with pytest.raises(ValueError, match="average"):
        DiffusionPriorAttack(DiffusionSettings(average=1.5), mnist_diffusion, mnist_vae).check(setup.leak)


def test_steps_stream_then_end_with_the_map_and_a_spread(mnist_vae, mnist_diffusion) -> None:
    setup = setup_for(["data.batch_size=4", "seed=3"])
    settings = DiffusionSettings(start="noise", sampler_steps=8, rounds=2, restarts=2)
    steps = list(DiffusionPriorAttack(settings, mnist_diffusion, mnist_vae).steps(setup.leak))
    assert [s.stage for s in steps[:2]] == ["dummy", "update"]
    assert {s.restart for s in steps[:-1]} == {0, 1}
    done = steps[-1]
    assert done.done and not any(s.done for s in steps[:-1])
    assert done.images.shape == setup.images.shape and 0 <= done.images.min() and done.images.max() <= 1
    assert done.spread is not None and float(done.spread.max()) > 0  # two chains from different noise disagree
    assert math.isfinite(done.loss) and done.loss == min(s.loss for s in steps[:-1] if s.stage == "update")


def test_the_chain_moves_from_noise_towards_the_batch(mnist_vae, mnist_diffusion) -> None:
    """The film strip's promise: the guided chain from pure noise ends nearer the victims than it began."""
    setup = setup_for(["data.batch_size=4", "seed=4"])
    settings = DiffusionSettings(start="noise", sampler_steps=30, rounds=1, labels="true")
    steps = list(DiffusionPriorAttack(settings, mnist_diffusion, mnist_vae).steps(setup.leak, setup.labels))
    first = finish(setup, steps[1]).evaluation.psnr
    last = finish(setup, steps[-1]).evaluation.psnr
    assert last > first + 3, (first, last)


def test_wrong_prior_scores_lower(mnist_vae) -> None:
    """The Fashion-MNIST prior on digits: its chain draws clothes-like strokes, further from the digits."""
    setup = setup_for(["data.batch_size=8", "seed=2"])
    scores = {}
    for name in ("mnist", "fashion_mnist"):
        attack = create_attack("diffusion_prior", prior=name, start="noise", sampler_steps=25, rounds=1,
                               labels="true")
        scores[name] = finish(setup, attack.run(setup.leak, setup.labels)).evaluation.psnr
    assert scores["fashion_mnist"] < scores["mnist"] - 1.5, scores


def test_bad_inputs_say_one_line(mnist_vae, mnist_diffusion) -> None:
    setup = setup_for(["data.batch_size=2"])
    with pytest.raises(ValueError, match="below one pass of"):
        DiffusionPriorAttack(DiffusionSettings(time_limit=0.01), mnist_diffusion, mnist_vae).check(setup.leak)
    too_many = replace(setup.leak, client_sizes=(MAX_BATCH + 1,))  # what the server would know of a larger batch
    with pytest.raises(ValueError, match=f"a batch of {MAX_BATCH + 1} images is more than the diffusion sampler"):
        DiffusionPriorAttack(DiffusionSettings(), mnist_diffusion, mnist_vae).check(too_many)
    fashion = load_diffusion("fashion_mnist")
    with pytest.raises(ValueError, match="must be of one data set"):
        DiffusionPriorAttack(DiffusionSettings(), fashion, mnist_vae)
    with pytest.raises(ConfigError, match="labels must be 'true' or 'recovered' for diffusion_prior"):
        with_overrides(Config(), ["attack.name=diffusion_prior", "attack.labels=joint"])


def test_config_and_command_line_take_it(tmp_path: Path) -> None:
    config = with_overrides(Config(), ["attack.name=diffusion_prior", "attack.sampler_steps=5", "attack.start=noise"])
    attack = make_attack(config)
    assert isinstance(attack, DiffusionPriorAttack) and attack.settings.sampler_steps == 5
    out = tmp_path / "run"
    code = cli(["run", "--set", "attack.name=diffusion_prior", "--set", "data.batch_size=2", "--set",
                "attack.iterations=20", "--set", "attack.sampler_steps=5", "--set", "attack.rounds=2",
                "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["closer_to_victim"] <= 1 and (out / "prior.png").is_file()


def test_closing_the_stream_mid_run_stops_it(mnist_vae, mnist_diffusion) -> None:
    """Stop mid-run: in the VAE stage or in the chain, closing the generator ends the attack."""
    setup = setup_for(["data.batch_size=2"])
    for skip in (3, 40):
        settings = DiffusionSettings(iterations=30, refine=0, sampler_steps=20, restarts=2)
        steps = DiffusionPriorAttack(settings, mnist_diffusion, mnist_vae).steps(setup.leak)
        for _, step in zip(range(skip), steps):
            pass
        steps.close()
        with pytest.raises(StopIteration):
            next(steps)
