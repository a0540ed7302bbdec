"""Privacy accounting: epsilon for a run of the subsampled Gaussian mechanism, and the reverse.

    epsilon(noise_multiplier=1.0, sample_rate=0.01, steps=1000, delta=1e-5)           # ~2.10 (RDP)
    noise_for_epsilon(target_epsilon=2.0, sample_rate=0.01, steps=1000, delta=1e-5)  # sigma

Opacus's accountants used on their own, with no model wrapped: RDP (Mironov 2017; Mironov, Talwar
& Zhang 2019, the sampled Gaussian mechanism) and PRV (Gopi, Lee & Wutschitz 2021, numerical
composition of privacy random variables; tighter). Each step samples every example (or client)
with probability q = sample_rate and adds Gaussian noise of std sigma * C to the clipped sum.
"""

from __future__ import annotations

import warnings
from typing import Literal

from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

Accountant = Literal["rdp", "prv"]
ACCOUNTANTS = {"rdp": RDPAccountant, "prv": PRVAccountant}

__all__ = ["ACCOUNTANTS", "Accountant", "epsilon", "noise_for_epsilon"]


def _check(sample_rate: float, steps: int, delta: float, accountant: str) -> None:
    """Raise ValueError naming the first parameter outside its range."""
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"unknown accountant {accountant!r}; known accountants: {', '.join(ACCOUNTANTS)}")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate q must be in (0, 1], got {sample_rate}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps}")


def epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: Accountant = "rdp"
) -> float:
    """Epsilon of (epsilon, delta)-DP after `steps` steps of noise sigma = `noise_multiplier` at rate q."""
    _check(sample_rate, steps, delta, accountant)
    if not noise_multiplier > 0:
        raise ValueError(f"noise_multiplier sigma must be > 0 (no noise means no privacy), got {noise_multiplier}")
    tracker = ACCOUNTANTS[accountant]()
    tracker.history = [(float(noise_multiplier), float(sample_rate), int(steps))]  # Opacus's compressed history
    try:
        return float(tracker.get_epsilon(delta=delta))
    except (OverflowError, ZeroDivisionError):  # sigma^2 past the largest float, or below the smallest
        raise ValueError(f"noise_multiplier sigma = {noise_multiplier:g} is beyond what the accountant can compute "
                         "(it squares sigma and divides by it); use one from 1e-8 to 1e6") from None


def noise_for_epsilon(
    target_epsilon: float, sample_rate: float, steps: int, delta: float, accountant: Accountant = "rdp"
) -> float:
    """The smallest noise multiplier (Opacus's binary search, tolerance 0.01) whose epsilon <= target."""
    _check(sample_rate, steps, delta, accountant)
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon must be > 0, got {target_epsilon}")
    with warnings.catch_warnings():  # the search probes far-off sigmas, whose best RDP order lies off Opacus's grid
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        sigma = get_noise_multiplier(
            target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate, steps=int(steps),
            accountant=accountant,
        )
    return float(sigma)
