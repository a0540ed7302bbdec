"""Gradient-inversion attacks: find the images (and labels) behind a leaked update.

    attack = create_attack("dlg", iterations=500)
    for step in attack.steps(leak):      # an AttackStep per iteration; stop whenever you like
        ...
"""

from .diffusion import DiffusionPriorAttack, DiffusionSettings
from .inversion import GradientInversion, Settings
from .presets import ATTACKS, PRESETS, Attack, create_attack
from .prior import PriorSettings, VAEPriorAttack, posterior_spread
from .stages import backpropagate, compare, dummy_gradient, make_dummy
from .step import AttackStep

__all__ = [
    "ATTACKS", "Attack", "AttackStep", "GradientInversion", "PRESETS", "Settings", "create_attack",
    "PriorSettings", "VAEPriorAttack", "posterior_spread", "DiffusionSettings", "DiffusionPriorAttack",
    "make_dummy", "dummy_gradient", "compare", "backpropagate",
]
