"""One step of an attack, as a caller sees it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

import torch

Stage = Literal["dummy", "gradient", "compare", "update", "done"]


@dataclass(frozen=True)
class AttackStep:
    """A snapshot after one stage or iteration of an attack.

    `images` are the current dummy images of the running restart, clamped to [0, 1] for display;
    on the last step (`done`) they are the best reconstruction over all restarts, the one whose
    gradient distance is lowest. `reason` says why a run ended.
    """

    iteration: int  # gradient evaluations so far in this restart
    stage: Stage
    restart: int
    loss: float  # gradient distance (+ regularisers) of the current dummies
    best_loss: float  # lowest loss of any finished or running restart
    images: torch.Tensor  # (B, C, H, W)
    labels: torch.Tensor  # (B,) hard labels, or (B, K) label distributions when optimised jointly
    seconds: float  # wall time since the attack started
    done: bool = False
    reason: str = ""
    spread: torch.Tensor | None = None  # (B, C, H, W) per-pixel spread over posterior samples (prior attack, done step)

    def __repr__(self) -> str:
        end = f", done: {self.reason}" if self.done else ""
        return (
            f"AttackStep(restart {self.restart}, iteration {self.iteration}, {self.stage}, "
            f"loss {self.loss:.3g}, {self.seconds:.2f} s{end})"
        )


def drain(steps: Iterable[AttackStep]) -> AttackStep:
    """Run an attack's steps to the end; return the last (the `done` step with the result)."""
    step = None
    for step in steps:
        pass
    if step is None:
        raise ValueError("the attack yielded no step")
    return step
