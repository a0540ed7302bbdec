"""engine.defence_explain: the numbers the Defences page draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import Config, with_overrides
from engine.defence_explain import layer_changes, secure_walkthrough
from engine.experiment import prepare


def test_layer_changes_same_update_is_unchanged_and_noise_turns_it():
    clean = prepare(Config()).leak.update
    same = layer_changes(clean, clean)
    assert all(abs(r.cosine - 1) < 1e-5 and r.clean_norm == r.defended_norm for r in same)
    noisy = prepare(with_overrides(Config(), ["defence.dp.noise_multiplier=10"])).leak.update
    rows = layer_changes(clean, noisy)
    assert [r.layer for r in rows] == list(clean)
    assert max(abs(r.cosine) for r in rows) < 0.5  # drowned in noise


def test_secure_walkthrough_sum_matches_the_plain_aggregate():
    setup = prepare(with_overrides(Config(), ["data.clients=3"]))
    walk = secure_walkthrough(setup, first=16)
    assert walk.plain.shape == walk.masked.shape == (3, 16)
    assert walk.max_error <= 3 * walk.step / 2 + 1e-6
    np.testing.assert_allclose(walk.total, walk.plain_total, atol=3 * walk.step)
    for name, u in setup.leak.update.items():  # the unmasked sum is the FedSGD aggregate the attack sees
        assert torch.allclose(walk.aggregate[name], u, atol=3 * walk.step)
    assert 0.3 < np.abs(walk.masked).mean() < 0.7  # masked entries spread over the whole ring, like uniform noise


def test_secure_walkthrough_with_a_dropout_sums_the_survivors():
    setup = prepare(with_overrides(Config(), ["data.clients=4"]))
    walk = secure_walkthrough(setup, first=8, drop_out=True)
    assert walk.survivors == (0, 1, 2)
    assert not walk.masked[3].any()  # nothing came from the dropped phone
    np.testing.assert_allclose(walk.total, walk.plain[:3].sum(0), atol=3 * walk.step)


def test_secure_walkthrough_needs_two_clients():
    with pytest.raises(ValueError, match="at least 2 clients"):
        secure_walkthrough(prepare(Config()))
