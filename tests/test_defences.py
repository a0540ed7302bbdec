"""Defences: golden accountant values, DP clipping and noise, compression ratios, DLG stopped by noise."""

from __future__ import annotations

import pytest

from engine.defences import epsilon, noise_for_epsilon


# --- accountant ---------------------------------------------------------------------------------


@pytest.mark.parametrize("accountant, golden", [("rdp", 2.10), ("prv", 1.84)])
def test_accountant_golden_values(accountant, golden) -> None:
    assert epsilon(1.0, 0.01, 1000, 1e-5, accountant) == pytest.approx(golden, abs=0.02)


def test_more_noise_spends_less_epsilon_and_more_steps_more() -> None:
    assert epsilon(2.0, 0.01, 1000, 1e-5) < epsilon(1.0, 0.01, 1000, 1e-5) < epsilon(1.0, 0.01, 2000, 1e-5)


def test_reverse_accountant_gives_back_the_epsilon() -> None:
    sigma = noise_for_epsilon(2.0, 0.01, 1000, 1e-5, "rdp")
    assert epsilon(sigma, 0.01, 1000, 1e-5, "rdp") == pytest.approx(2.0, abs=0.02)
    assert epsilon(sigma, 0.01, 1000, 1e-5, "rdp") <= 2.0


@pytest.mark.parametrize(
    "args, message",
    [
        ((0.0, 0.01, 1000, 1e-5), "noise_multiplier"),
        ((-1.0, 0.01, 1000, 1e-5), "noise_multiplier"),
        ((1.0, 0.0, 1000, 1e-5), "sample_rate"),
        ((1.0, 1.5, 1000, 1e-5), "sample_rate"),
        ((1.0, 0.01, 1000, 0.0), "delta"),
        ((1.0, 0.01, 1000, 1.0), "delta"),
        ((1.0, 0.01, 0, 1e-5), "steps"),
        ((1.0, 0.01, 2.5, 1e-5), "steps"),
    ],
)
def test_accountant_rejects_bad_parameters(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        epsilon(*args)


def test_reverse_accountant_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="target_epsilon"):
        noise_for_epsilon(0.0, 0.01, 1000, 1e-5)
    with pytest.raises(ValueError, match="unknown accountant 'gdp'.*rdp, prv"):
        noise_for_epsilon(1.0, 0.01, 1000, 1e-5, "gdp")
