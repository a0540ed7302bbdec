"""Live attack runs for the pages: a `Job` drains the engine's step generator a little at a time.

The page asks for a goal (one stage, one iteration, N iterations, the end) and a fragment advances
the job for a fraction of a second per rerun, drawing as it goes; between reruns the browser stays
responsive, so Stop (a button outside the fragment) takes effect within one slice. The job keeps
film frames (images, loss, PSNR) so a finished run can be scrubbed like a film.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import streamlit as st

from engine.attacks import AttackStep
from engine.experiment import Result, Setup, finish
from engine.metrics import evaluate

from pages.draw import to_uint8

LOG = logging.getLogger(__name__)
SLICE_S = 0.7  # compute per fragment rerun
TICK_S = 0.1  # pause between fragment reruns while a job runs


@dataclass
class Frame:
    """One picture of the film: the dummies after an iteration, and how good they were."""

    iteration: int
    loss: float
    psnr: float
    seconds: float
    images: np.ndarray  # (B, H, W, C) uint8


@dataclass(eq=False)
class Job:
    """One attack on one leak, advanced on demand."""

    title: str
    setup: Setup
    steps: Iterator[AttackStep]
    budget: int  # iterations the attack may take
    key: object = None  # what it was made from; a different key means a stale job
    last: Optional[AttackStep] = None
    frames: list[Frame] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)  # (iteration, loss) per update
    result: Optional[Result] = None
    goal: Optional[tuple[str, int]] = None  # ("stage", 0), ("until", iteration) or ("end", 0)
    compute_s: float = 0.0  # time spent inside the attack, pauses excluded
    error: str = ""
    stopped: bool = False

    @property
    def running(self) -> bool:
        return self.goal is not None

    @property
    def done(self) -> bool:
        return self.result is not None or bool(self.error)

    @property
    def iteration(self) -> int:
        return self.last.iteration if self.last is not None else 0

    def ask(self, kind: str, count: int = 1) -> None:
        """Set a goal: 'stage' (one step), 'iterations' (count more), 'end'."""
        if self.done:
            return
        self.stopped = False
        if kind == "iterations":
            self.goal = ("until", self.iteration + count)
        else:
            self.goal = (kind, 0)

    def stop(self) -> None:
        if self.running:
            self.stopped = True
        self.goal = None

    def close(self) -> None:
        """End the generator (nothing keeps running)."""
        self.goal = None
        self.steps.close()

    def advance(self, seconds: float = SLICE_S) -> None:
        """Run the attack towards its goal for at most `seconds`."""
        deadline = time.perf_counter() + seconds
        while self.goal is not None:
            started = time.perf_counter()
            try:
                step = next(self.steps)
            except StopIteration:
                self.goal = None
                break
            except Exception as err:  # noqa: BLE001 - a bad leak, a torch failure, a bug: say so, keep the session
                LOG.exception("attack %s failed", self.title)
                self.error, self.goal = f"The attack stopped with an error: {err}", None
                break
            finally:
                self.compute_s += time.perf_counter() - started
            self._record(step)
            if step.done:
                self.result, self.goal = finish(self.setup, step), None
            elif self._reached(step):
                self.goal = None
            if time.perf_counter() > deadline:
                break

    def _reached(self, step: AttackStep) -> bool:
        kind, target = self.goal
        if kind == "stage":
            return True
        if kind == "until":
            return step.stage == "update" and step.iteration >= target
        return False

    def _record(self, step: AttackStep) -> None:
        self.last = step
        if step.stage == "update":
            self.losses.append((step.iteration, step.loss))
        every = max(1, self.budget // 150)
        film = step.stage == "dummy" and step.iteration == 0 and not self.frames
        film |= step.stage == "update" and (step.iteration <= 30 or step.iteration % every == 0)
        film |= step.done
        if film:
            psnr = evaluate(step.images.cpu(), self.setup.images.cpu()).psnr
            self.frames.append(Frame(step.iteration, step.loss, psnr, self.compute_s, to_uint8(step.images)))


def make_job(title: str, setup: Setup, steps: Iterator[AttackStep], budget: int, key: object = None) -> Job:
    return Job(title=title, setup=setup, steps=steps, budget=budget, key=key)


def _advance(jobs: Sequence[Job], together: bool) -> bool:
    """One slice of work; True if some job was running before it."""
    active = [job for job in jobs if job.running]
    if together:
        for job in active:
            job.advance(SLICE_S / len(active))
    elif active:
        active[0].advance(SLICE_S)
    return bool(active)


def live(jobs: Sequence[Job], draw: Callable[[], None], key: str, together: bool = False) -> None:
    """Draw `draw()` in a fragment that, while any job runs, advances it a slice per rerun.

    `together`: advance all running jobs a share of the slice each (side-by-side races);
    otherwise the first running job only (a queue). When the last job finishes, the whole page
    reruns so that controls outside the fragment (film slider, downloads) catch up."""
    _advance(jobs, together)  # the full run does the first slice itself
    running = any(job.running for job in jobs)
    in_full_run = [True]

    def body() -> None:
        was_running = False if in_full_run[0] else _advance(jobs, together)
        draw()
        if was_running and not any(job.running for job in jobs):
            st.rerun()

    st.fragment(body, run_every=TICK_S if running else None, key=key)()
    in_full_run[0] = False
