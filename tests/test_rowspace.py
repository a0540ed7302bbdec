"""A fully connected first layer confines the batch to the row space of its gradient (Eq. 1-3 of
engine/attacks/rowspace.py): the basis holds the true images, a fit inside it recovers them, and
the prior attack uses it when the victim allows."""

from __future__ import annotations

import pytest
import torch

from engine.attacks import PriorSettings, VAEPriorAttack
from engine.attacks.rowspace import fit_in_rowspace, image_basis
from engine.config import Config, with_overrides
from engine.experiment import finish, prepare
from engine.metrics import match, psnr
from engine.priors import load_prior


def setup_for(*overrides: str):
    return prepare(with_overrides(Config(), ["model.name=mlp", *overrides]))


def residual(images: torch.Tensor, basis: torch.Tensor) -> float:
    """How much of the images lies outside span(basis), relative to their norm."""
    flat = images.flatten(1)
    return float((flat - flat @ basis @ basis.T).norm() / flat.norm())


@pytest.mark.parametrize("overrides", [
    ("data.batch_size=8",),
    ("data.batch_size=4", "data.clients=2", "leak.protocol=fedavg", "leak.local_steps=3"),
])
def test_the_basis_holds_the_true_images_and_nothing_much_else(overrides):
    setup = setup_for(*overrides)
    basis = image_basis(setup.leak)
    assert basis is not None and basis.shape == (784, 8)
    assert residual(setup.images, basis) < 1e-3
    other = prepare(with_overrides(Config(), ["model.name=mlp", "data.batch_size=8", "seed=5"])).images
    assert residual(other, basis) > 0.3  # another batch is far outside it


@pytest.mark.parametrize("overrides", [("model.name=lenet",), ("model.name=convnet",), ("model.width=8",)])
def test_no_basis_for_convolutions_or_a_first_layer_narrower_than_the_batch(overrides):
    assert image_basis(setup_for("data.batch_size=8", *overrides).leak) is None


def test_fit_in_the_row_space_recovers_a_batch_from_noise():
    setup = setup_for("data.batch_size=8", "seed=1")
    basis = image_basis(setup.leak)
    noise = torch.rand(setup.images.shape, generator=torch.Generator().manual_seed(0))
    fit = fit_in_rowspace(setup.leak, setup.labels, noise, basis, steps=1500)
    losses = []
    while True:
        try:
            losses.append(next(fit)[1])
        except StopIteration as end:
            loss, images = end.value
            break
    assert losses == sorted(losses, reverse=True)  # the guard keeps every step downhill
    score = float(psnr(images.clamp(0, 1)[match(images, setup.images)], setup.images).mean())
    assert score > 40, score


def test_prior_attack_refines_in_the_row_space_when_the_victim_allows():
    setup = setup_for("data.batch_size=16", "seed=2")
    attack = VAEPriorAttack(PriorSettings(iterations=100, restarts=1, rowspace_steps=2000), load_prior("mnist"))
    assert attack.refinement(setup.leak)[0] == "rowspace"
    step = attack.run(setup.leak)
    assert "rowspace" in step.reason
    evaluation = finish(setup, step).evaluation
    assert evaluation.label_accuracy == 1.0
    assert evaluation.psnr > 35, evaluation.psnr  # exact to the eye; float32 stops it near 40-70 dB


def test_asking_for_the_row_space_on_a_convnet_says_why_not():
    setup = prepare(with_overrides(Config(), ["model.name=convnet", "data.batch_size=4"]))
    attack = VAEPriorAttack(PriorSettings(refine_space="rowspace"), load_prior("mnist"))
    assert attack.refinement(setup.leak)[0] == "rowspace"
    with pytest.raises(ValueError, match="fully connected"):
        attack.run(setup.leak)
    assert VAEPriorAttack(PriorSettings(), load_prior("mnist")).refinement(setup.leak) == ("features", None)


def test_dp_noise_hides_the_slice_and_the_prior_falls_back_to_its_features():
    setup = setup_for("data.batch_size=8", "defence.dp.noise_multiplier=0.01")
    assert image_basis(setup.leak) is None
    attack = VAEPriorAttack(PriorSettings(), load_prior("mnist"))
    assert attack.refinement(setup.leak) == ("features", None)
