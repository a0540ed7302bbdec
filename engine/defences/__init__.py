"""Defences against gradient inversion, as pure functions on updates, and what they cost.

    epsilon(noise_multiplier=1.0, sample_rate=0.01, steps=1000, delta=1e-5)   # the accountant
"""

from .accountant import epsilon, noise_for_epsilon

__all__ = ["epsilon", "noise_for_epsilon"]
