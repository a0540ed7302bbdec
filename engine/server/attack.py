"""The server's attacks on its own front layer, as steppers like every other attack.

    attack = create_server_attack("imprint")
    for step in attack.steps(leak): ...     # one AttackStep, done: the images read off the update

There is nothing to optimise: one division per row (front.py, Eq. 3). The step has the same shape
as an optimising attack's last one, so the command line, the app and `finish` take it unchanged.
Labels are not read (-1 each): the images are what these attacks are for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

from ..attacks.step import AttackStep, drain
from ..leakage import Leak
from .imprint import Readout, read_imprint
from .trap import read_trap

__all__ = ["READERS", "ServerAttack", "create_server_attack", "UNKNOWN_LABEL"]

READERS: dict[str, Callable[[Leak], Readout]] = {"imprint": read_imprint, "trap": read_trap}
UNKNOWN_LABEL = -1


@dataclass(frozen=True)
class OneShot:
    """The settings a caller may ask any attack for: one iteration, one restart."""

    iterations: int = 1
    restarts: int = 1


class ServerAttack:
    """Read the images off a dishonest server's front layer: one step, no optimisation."""

    def __init__(self, kind: str) -> None:
        if kind not in READERS:
            raise ValueError(f"unknown server attack {kind!r}; known: {', '.join(READERS)}")
        self.kind = kind
        self.settings = OneShot()

    def steps_per_restart(self, leak: Leak) -> int:
        return 1

    def steps(self, leak: Leak, true_labels: Optional[torch.Tensor] = None) -> Iterator[AttackStep]:
        """One `done` step: the B strongest images read off the update, grey where fewer came back."""
        start = time.perf_counter()
        readout = READERS[self.kind](leak)
        n = leak.num_images
        images = torch.full((n, *leak.image_shape), 0.5)  # (B, C, H, W)
        found = min(n, len(readout))
        images[:found] = readout.images[:found].cpu()
        labels = torch.full((n,), UNKNOWN_LABEL, dtype=torch.long) if true_labels is None else true_labels.cpu()
        reason = f"one shot: {len(readout)} of {readout.bins} {'bins' if self.kind == 'imprint' else 'rows'} held images"
        yield AttackStep(
            iteration=1, stage="done", restart=0, loss=0.0, best_loss=0.0, images=images, labels=labels,
            seconds=time.perf_counter() - start, done=True, reason=reason,
        )

    def run(self, leak: Leak, true_labels: Optional[torch.Tensor] = None) -> AttackStep:
        return drain(self.steps(leak, true_labels))


def create_server_attack(name: str) -> ServerAttack:
    """The server attack called `name` ('imprint' or 'trap'); ValueError naming the known ones."""
    return ServerAttack(name)
