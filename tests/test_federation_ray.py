"""`federation.backend=ray`: the same App on Flower's Simulation Runtime gives the in-process run's accuracies.

Needs `pip install -r requirements-ray.txt` (CI does not install it: the test skips). Half the clients
are sampled each round: Ray's SuperNodes have random node ids, so the server asks each its partition
and samples in partition order, and the two backends train the same shares from the same seed; Ray
keeps no virtual clock, so its timing columns are NaN and its bytes 0.
"""

from __future__ import annotations

import math

import pytest

pytest.importorskip("ray", reason="Flower's Simulation Runtime is optional: pip install -r requirements-ray.txt")

import ray  # noqa: E402

from engine.config import Config, with_overrides  # noqa: E402
from engine.federation import run_history, simulate  # noqa: E402

TINY = ["model.name=lenet", "federation.clients=4", "federation.fraction=0.5", "federation.rounds=2",
        "federation.local_epochs=1", "federation.batch_size=250"]


def _config(backend: str, *extra: str) -> Config:
    return with_overrides(Config(), TINY + [f"federation.backend={backend}", *extra])


def test_ray_gives_the_in_process_accuracies_with_the_same_seed():
    ours, theirs = run_history(_config("inprocess")), run_history(_config("ray"))
    assert theirs.initial_accuracy == ours.initial_accuracy
    assert [r.accuracy for r in theirs.records] == pytest.approx([r.accuracy for r in ours.records], abs=1e-9)
    assert [r.loss for r in theirs.records] == pytest.approx([r.loss for r in ours.records], rel=1e-5)
    assert [r.clients for r in theirs.records] == [r.clients for r in ours.records]  # the same seeded sample
    assert all(len(r.clients) == 2 for r in theirs.records) and len({r.clients for r in ours.records}) == 2
    assert ours.records[-1].loss < ours.initial_loss  # the run trained
    assert all(math.isnan(r.virtual_seconds) and r.bytes_up == 0 for r in theirs.records)  # no clock under Ray
    assert not ray.is_initialized()  # Flower shut Ray down


def test_stopping_a_ray_run_keeps_the_rounds_done_and_ends_ray():
    run = simulate(_config("ray", "federation.rounds=3"))
    first = next(run)
    run.close()  # a Stop button, Ctrl-C
    assert first.round == 1 and first.replied == 2
    assert not ray.is_initialized()
