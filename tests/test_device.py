"""Device choice, CPU threads and seeding."""

from __future__ import annotations

import pytest
import torch

from engine.device import resolve_device, seed_everything, seeded_generator, set_threads

HAS_CUDA = torch.cuda.is_available()


def test_auto_picks_cuda_if_available_else_cpu() -> None:
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")


def test_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is present")
def test_cuda_without_cuda_raises() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_unknown_device_lists_choices() -> None:
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        resolve_device("tpu")


def test_set_threads_returns_previous() -> None:
    original = torch.get_num_threads()
    try:
        assert set_threads(1) == original
        assert torch.get_num_threads() == 1
        assert set_threads(2) == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(original)
    with pytest.raises(ValueError, match="threads"):
        set_threads(0)


def test_seeded_generator_is_reproducible_and_independent_of_global_state() -> None:
    a = torch.rand(5, generator=seeded_generator(3, "cpu"))
    torch.rand(7)  # consuming the global generator must not matter
    b = torch.rand(5, generator=seeded_generator(3, torch.device("cpu")))
    assert torch.equal(a, b)
    assert not torch.equal(a, torch.rand(5, generator=seeded_generator(4)))


def test_seed_everything_repeats_global_draws() -> None:
    assert seed_everything(11) is None
    first = torch.rand(4)
    seed_everything(11)
    assert torch.equal(first, torch.rand(4))
