"""Gradient inversion as one loop over the four DLG stages, with the knobs the papers turn.

DLG and Inverting Gradients are presets of `GradientInversion` (see `presets.py`): they differ
only in the optimiser, the gradient distance, the regularisers and the constraints. The attack
is a generator of `AttackStep`s, so a caller can draw each step, or stop whenever it likes:

    attack = GradientInversion(Settings(optimiser="lbfgs", distance="l2"))
    for step in attack.steps(leak):
        ...          # break at any time: nothing keeps running
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Generator, Iterator, Literal

import torch

from ..labels import Auxiliary, counts_to_labels, idlg_label, label_candidates
from ..leakage import Leak
from ..objectives import create_distance
from ..regularisers import create_regulariser
from .lbfgs import CompactLBFGS
from .stages import backpropagate, compare, dummy_gradient, make_dummy
from .step import AttackStep, drain

GUARD = 1.0  # an L-BFGS step is halved while it takes the loss above GUARD x its value (1: monotone)
LabelMode = Literal["true", "recovered", "joint"]

__all__ = ["Settings", "GradientInversion"]


@dataclass(frozen=True)
class Settings:
    """Everything that makes one gradient-inversion attack differ from another."""

    optimiser: Literal["lbfgs", "adam"] = "lbfgs"
    distance: str = "l2"  # a name in engine.objectives.DISTANCES
    regularisers: tuple[tuple[str, float], ...] = ()  # (name in REGULARISERS, weight)
    lr: float = 1.0  # L-BFGS: unit step; Adam: its learning rate
    iterations: int = 300  # gradient evaluations per restart
    restarts: int = 1
    labels: LabelMode = "recovered"
    init: str = "grey"  # dummy start, see stages.make_dummy (class_mean: needs auxiliary images and labels)
    init_noise: float = 1e-3  # spread of the grey start
    sigmoid_steps: int = 0  # batches of 2+: optimise sigmoid(z) for this many evaluations, then raw pixels
    signed: bool = False  # step on the sign of the gradient (Inverting Gradients)
    box: bool = False  # clamp the dummies to [0, 1] after every step
    schedule: tuple[float, ...] = ()  # fractions of the run where the learning rate drops 10x
    history: int = 100  # L-BFGS curvature pairs
    tolerance: float = 0.0  # a restart stops once its loss is below this; the attack too
    time_limit: float = 0.0  # seconds for the whole attack; 0 = none
    seed: int = 0
    stages: bool = False  # also yield after the gradient and compare stages
    label_candidates: int = 4  # recovered labels: multisets to try (engine.labels.label_candidates)
    label_probe: int = 100  # evaluations each candidate runs before they are ranked; 0 = no probe
    label_margin: float = 0.5  # a less likely multiset wins only if its probe loss is below this fraction


class _Restart:
    """The variables of one restart: pixels (raw or behind a sigmoid) and, jointly, label logits."""

    def __init__(
        self, leak: Leak, settings: Settings, labels: torch.Tensor | None, generator: torch.Generator,
        auxiliary: Auxiliary | None = None,
    ):
        images = make_dummy(leak, settings.init, generator, settings.init_noise, labels, auxiliary)  # Stage 1
        self.shape = images.shape
        self.sigmoid = settings.sigmoid_steps > 0 and leak.num_images > 1
        pixels = torch.logit(images.clamp(1e-4, 1 - 1e-4)) if self.sigmoid else images
        parts = [pixels.flatten()]
        self.labels = labels
        if labels is None:  # joint: optimise label logits too, as the original DLG
            logits = torch.randn((leak.num_images, leak.num_classes), generator=generator).to(images.device)
            parts.append(logits.flatten())
        self.variables = torch.cat(parts)
        self.num_classes = leak.num_classes

    def unpack(self, variables: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (n, C, H, W), targets (n,) or (n, K)) from the flat variable vector."""
        count = math.prod(self.shape)
        pixels = variables[:count].view(self.shape)
        images = torch.sigmoid(pixels) if self.sigmoid else pixels
        if self.labels is not None:
            return images, self.labels
        return images, variables[count:].view(self.shape[0], self.num_classes).softmax(dim=1)

    def project(self, variables: torch.Tensor) -> torch.Tensor:
        """Clamp the raw pixels to the box [0, 1]; label logits stay free."""
        count = math.prod(self.shape)
        return torch.cat([variables[:count].clamp(0, 1), variables[count:]])

    def to_raw_pixels(self) -> None:
        """Leave the sigmoid: the same images, now as raw pixels."""
        count = math.prod(self.shape)
        self.variables = self.variables.clone()
        self.variables[:count] = torch.sigmoid(self.variables[:count])
        self.sigmoid = False


def _displayable(images: torch.Tensor) -> torch.Tensor:
    """Images as a caller can show and score them: in [0, 1], a diverged (NaN) pixel grey."""
    return torch.nan_to_num(images, nan=0.5).clamp(0, 1)


class _Clock:
    """Seconds the attack has worked: wall time since start, less the time it sat suspended at a
    yield while its caller drew the step (or waited for a click)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.suspended = 0.0

    def __call__(self) -> float:
        return time.perf_counter() - self.start - self.suspended

    def hand_over(self, step: AttackStep):
        """Yield `step` to the caller without counting the caller's time."""
        paused = time.perf_counter()
        yield step
        self.suspended += time.perf_counter() - paused


def _advance(run: Generator, clock: _Clock, until: int | None):
    """Forward `run`'s steps until an update reaches iteration `until` (None: to its end).
    Returns (last step, the run's return value or None if it is still going)."""
    last = None
    while True:
        try:
            last = next(run)
        except StopIteration as end:
            return last, end.value
        yield from clock.hand_over(last)
        if until is not None and last.stage == "update" and last.iteration >= until:
            return last, None


def _rank_probes(probes: list, margin: float) -> list:
    """Order probed label candidates (loss, prior rank, entry): the count estimate's favourite stays
    first unless a less likely candidate's loss is below `margin` times the leader's (short probes
    are noisy; measured on 60 batches of 8, this beat both the estimate alone and the lowest loss)."""
    leader = probes[0]
    for probe in probes[1:]:
        if probe[0] < margin * leader[0]:
            leader = probe
    rest = sorted((p for p in probes if p is not leader), key=lambda p: (p[0], p[1]))
    return [leader, *rest]


def _finished(result):
    """A generator that has already ended with `result`."""
    return result
    yield  # pragma: no cover  (makes this a generator function)


class GradientInversion:
    """Find dummy images whose update matches the leaked one (and, optionally, their labels).
    `auxiliary`: labelled images of the same kind the attacker holds (none of the victims'), used
    to read the labels off the gradient (engine.labels, Eq. 5) and, with init="class_mean", to start
    each dummy at the mean image of its label."""

    def __init__(self, settings: Settings, auxiliary: Auxiliary | None = None) -> None:
        if settings.init == "class_mean" and (auxiliary is None or settings.labels == "joint"):
            raise ValueError("the class_mean start needs the attacker's labelled auxiliary images (attack.auxiliary "
                             "> 0, on a data set with a train part) and labels that are true or recovered, not joint")
        self.settings = settings
        self.auxiliary = auxiliary
        self.distance = create_distance(settings.distance)
        self.regularisers = [(create_regulariser(name), weight) for name, weight in settings.regularisers]

    def __repr__(self) -> str:
        return f"GradientInversion({self.settings})"

    def label_plans(self, leak: Leak, true_labels: torch.Tensor | None) -> list[torch.Tensor | None]:
        """The labels each restart assumes: the truth, the recovered candidates, or None (joint)."""
        mode = self.settings.labels
        if mode == "true":
            if true_labels is None:
                raise ValueError("labels='true' needs the true labels (an attacker who knows them)")
            return [true_labels.sort().values]
        if mode == "joint":
            return [None]
        if leak.num_images == 1:
            return [torch.tensor([idlg_label(leak)])]
        limit = max(self.settings.label_candidates, self.settings.restarts)
        return [counts_to_labels(c) for c in label_candidates(leak, limit=limit, auxiliary=self.auxiliary)]

    def run(self, leak: Leak, true_labels: torch.Tensor | None = None) -> AttackStep:
        """Drain the attack; the last step holds the best reconstruction."""
        return drain(self.steps(leak, true_labels))

    def steps(self, leak: Leak, true_labels: torch.Tensor | None = None) -> Iterator[AttackStep]:
        """Yield a step per iteration (and per stage if `settings.stages`); the last one is `done`.

        With recovered labels and several candidate multisets, each candidate first runs for
        `label_probe` evaluations; the restarts then continue the candidates in order of their loss
        (a wrong multiset leaves the gradient distance high), so no evaluation is thrown away."""
        s = self.settings
        clock = _Clock()
        device = next(iter(leak.params.values())).device
        plans = self.label_plans(leak, None if true_labels is None else true_labels.to(device))

        def launch(index: int, labels: torch.Tensor | None) -> tuple[_Restart, Generator]:
            generator = torch.Generator().manual_seed(s.seed * 1000 + index)
            state = _Restart(leak, s, None if labels is None else labels.to(device), generator, self.auxiliary)
            launched.append(self._restart(leak, state, index, clock, best_loss))
            return state, launched[-1], None

        best_loss = math.inf
        launched: list[Generator] = []  # every restart started, to close whatever way this ends
        queue: list[tuple[_Restart, Generator, AttackStep | None]] = []  # (state, run, its last step)
        try:
            if len(plans) > 1 and s.label_probe > 0:  # probe every candidate, then rank them
                probes = []
                for index, labels in enumerate(plans):
                    state, run, _ = launch(index, labels)
                    last, result = yield from _advance(run, clock, s.label_probe)
                    if result is not None:  # a probe that already ended (converged, diverged, out of time)
                        run = _finished(result)
                    probes.append((last.loss if math.isfinite(last.loss) else math.inf, index, (state, run, last)))
                    if result is not None and result[3] and "converged" not in result[3]:
                        break  # out of time or diverged: no point probing further
                queue = [entry for _, _, entry in _rank_probes(probes, s.label_margin)]
            for index in range(len(queue), s.restarts):
                queue.append(launch(index, plans[index % len(plans)]))

            best: tuple[float, torch.Tensor, torch.Tensor, int] | None = None
            reason = f"finished {s.restarts} restart(s) of {s.iterations} iterations"
            for restart, (state, run, probed) in enumerate(queue[: s.restarts]):
                last, result = yield from _advance(run, clock, None)
                last = last or probed
                loss, images, targets, why = result
                if math.isfinite(loss) and (best is None or loss < best[0]):
                    best = (loss, images, targets, last.iteration)
                    best_loss = loss
                if why:
                    reason = why
                    break
            if best is None:  # every restart diverged: show where the last one was
                images, targets = state.unpack(state.variables.detach())
                best = (float("nan"), images, targets, last.iteration)
            loss, images, targets, iteration = best
        finally:  # stopped early or finished: no restart is left suspended
            for run in launched:
                run.close()
        yield AttackStep(
            iteration=iteration, stage="done", restart=restart, loss=loss, best_loss=loss,
            images=_displayable(images), labels=targets, seconds=clock(), done=True, reason=reason,
        )

    def _restart(
        self, leak: Leak, state: _Restart, restart: int, clock: _Clock, best_loss: float
    ) -> Generator[AttackStep, None, tuple[float, torch.Tensor, torch.Tensor, str]]:
        """One restart. Returns (loss, images, targets, reason to end the whole attack or "")."""
        s = self.settings

        def snapshot(iteration: int, stage: str, loss: float, variables: torch.Tensor) -> AttackStep:
            images, targets = state.unpack(variables.detach())
            return AttackStep(
                iteration, stage, restart, loss, min(best_loss, loss), _displayable(images), targets,
                clock(),
            )

        def evaluate(variables: torch.Tensor, iteration: int, moved_from: float = math.nan):
            """Stages 2-4 at `variables`: (loss, dD/dvariables). In stage mode a step that moved the
            pixels is shown first as the update stage (with the loss it moved from)."""
            if s.stages and not math.isnan(moved_from):
                yield snapshot(iteration, "update", moved_from, variables)
            variables = variables.detach().requires_grad_()
            images, targets = state.unpack(variables)
            dummy = dummy_gradient(leak, images, targets)  # Stage 2
            if s.stages:
                yield snapshot(iteration, "gradient", math.nan, variables)
            loss = compare(dummy, leak, self.distance)  # Stage 3
            for regulariser, weight in self.regularisers:
                loss = loss + weight * regulariser(images)
            if s.stages:
                yield snapshot(iteration, "compare", float(loss.detach()), variables)
            gradient = backpropagate(loss, variables)  # Stage 4 (the optimiser does the rest)
            return float(loss.detach()), gradient

        yield snapshot(0, "dummy", math.nan, state.variables)
        variables = state.variables
        loss, gradient = yield from evaluate(variables, 0)
        kept = (loss, variables.detach().clone())  # the lowest loss of this restart and where it was

        def result(why: str = "") -> tuple[float, torch.Tensor, torch.Tensor, str]:
            images, targets = state.unpack(kept[1].detach())
            return kept[0], images, targets, why

        optimiser = self._optimiser(variables)
        iteration = 0
        while iteration < s.iterations:
            if s.time_limit and clock() > s.time_limit:
                return result(f"time limit of {s.time_limit:g} s reached")
            if state.sigmoid and iteration >= s.sigmoid_steps:  # leave the sigmoid: same images, raw pixels
                state.variables = variables
                state.to_raw_pixels()
                variables = state.variables
                loss, gradient = yield from evaluate(variables, iteration)
                kept = (loss, variables.detach().clone())  # kept iterates must be in the current parameterisation
                optimiser = self._optimiser(variables)
            if isinstance(optimiser, CompactLBFGS):
                variables, loss, gradient, evaluations = yield from self._lbfgs_step(
                    optimiser, state, variables, loss, gradient, iteration, evaluate
                )
                iteration += evaluations
            else:
                variables, loss, gradient = yield from self._adam_step(optimiser, loss, gradient, iteration, evaluate)
                iteration += 1
            if not math.isfinite(loss):
                return result(
                    f"the gradient distance became {loss} at iteration {iteration}: the run diverged "
                    "(try a smaller learning rate or fewer iterations)"
                )
            if loss < kept[0]:
                kept = (loss, variables.detach().clone())  # Adam updates its tensor in place
            if not s.stages:
                yield snapshot(iteration, "update", loss, variables)
            if loss < s.tolerance:
                return result(f"converged: gradient distance {loss:.2e} below {s.tolerance:g}")
        return result()

    def _optimiser(self, variables: torch.Tensor):
        s = self.settings
        if s.optimiser == "lbfgs":
            return CompactLBFGS(s.history)
        variables = variables.detach().requires_grad_()
        adam = torch.optim.Adam([variables], lr=s.lr)
        milestones = [int(f * s.iterations) for f in s.schedule]
        return adam, torch.optim.lr_scheduler.MultiStepLR(adam, milestones=milestones, gamma=0.1)

    def _lbfgs_step(self, lbfgs: CompactLBFGS, state, variables, loss, gradient, iteration, evaluate):
        """One L-BFGS step with a unit step length; a step that makes the loss non-finite or larger
        (see GUARD) is halved, up to 8 times, instead of searched for. A monotone guard measured
        better than allowing 10x rises: those threw hard batches into saturated plateaus."""
        direction = lbfgs.direction(gradient)
        t = self.settings.lr if len(lbfgs) else self.settings.lr / max(1.0, float(gradient.abs().max()))
        evaluations = 0
        for _ in range(8):
            candidate = variables + t * direction
            if self.settings.box and not state.sigmoid:
                candidate = state.project(candidate)
            new_loss, new_gradient = yield from evaluate(candidate, iteration + evaluations + 1, loss)
            evaluations += 1
            if math.isfinite(new_loss) and new_loss <= GUARD * loss + 1e-12:
                break
            t /= 2
        if math.isfinite(new_loss):
            lbfgs.update(candidate - variables, new_gradient - gradient)
        return candidate.detach(), new_loss, new_gradient, evaluations

    def _adam_step(self, optimiser, loss, gradient, iteration, evaluate):
        """One (signed) Adam step on the dummies, then the box constraint."""
        adam, scheduler = optimiser
        parameter = adam.param_groups[0]["params"][0]
        parameter.grad = gradient.sign() if self.settings.signed else gradient
        adam.step()
        scheduler.step()
        if self.settings.box:
            with torch.no_grad():
                parameter.clamp_(0, 1)
        loss, gradient = yield from evaluate(parameter, iteration + 1, loss)
        return parameter.detach(), loss, gradient
