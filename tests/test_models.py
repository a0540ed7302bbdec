"""Victim models: every architecture at every input shape, seeded, and trainable."""

from __future__ import annotations

import pytest
import torch

from engine.data import load_dataset
from engine.models import MODELS, count_parameters, create_model, train_model


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (1, 32), (3, 28)])
def test_every_model_takes_every_input_shape(name: str, channels: int, size: int) -> None:
    model = create_model(name, channels, size)
    assert model(torch.rand(2, channels, size, size)).shape == (2, 10)


def test_the_same_seed_gives_the_same_weights_and_another_seed_does_not() -> None:
    a, b, c = (create_model("convnet", seed=s) for s in (7, 7, 8))
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_dlg_lenet_keeps_the_papers_uniform_init_and_size() -> None:
    model = create_model("lenet", seed=0)
    values = torch.cat([p.flatten() for p in model.parameters()])
    assert values.min() >= -0.5 and values.max() <= 0.5
    conv1, conv2_3, fc = 1 * 12 * 5 * 5 + 12, 2 * (12 * 12 * 5 * 5 + 12), 12 * 7 * 7 * 10 + 10
    assert count_parameters(model) == conv1 + conv2_3 + fc == 13_426


def test_unknown_model_and_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="lenet"):
        create_model("vgg")
    with pytest.raises(ValueError, match="28 or 32"):
        create_model("lenet", size=64)


def test_training_on_the_bundled_train_sample_makes_the_model_better() -> None:
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    model = create_model("convnet", seed=0)

    def accuracy() -> float:
        with torch.no_grad():
            return float((model(test.images).argmax(1) == test.labels).float().mean())

    before = accuracy()
    train_model(model, train.images, train.labels, steps=150, lr=0.05, seed=0)
    assert accuracy() > max(0.6, before + 0.3)
