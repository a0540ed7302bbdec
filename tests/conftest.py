"""Shared fixtures: bundled MNIST test digits and a seeded DLG LeNet."""

from __future__ import annotations

import pytest
import torch

from engine.data import load_dataset
from engine.models import create_model


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> None:
    """Tests run on one torch thread: steadier on a busy two-core machine."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mnist():
    return load_dataset("mnist")


@pytest.fixture
def lenet():
    return create_model("lenet", seed=0)
