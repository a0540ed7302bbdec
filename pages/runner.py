"""Live attack runs for the pages: a `Job` drains the engine's step generator a little at a time.

The page asks for a goal (one stage, one iteration, N iterations, the end) and a fragment advances
the job for a fraction of a second per rerun, drawing as it goes; between reruns the browser stays
responsive, so Stop (a button outside the fragment) takes effect within one slice. The job keeps
film frames (images, loss, PSNR) so a finished run can be scrubbed like a film.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import streamlit as st

from engine.attacks import AttackStep
from engine.config import Config, with_overrides
from engine.experiment import Result, Setup, finish, make_attack
from engine.metrics import evaluate

from pages.common import encode
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
    images: np.ndarray  # (B, H, W, C) uint8, matched to the originals' order
    restart: int = 0  # which start (or label guess) of the attack


@dataclass(eq=False)
class Job:
    """One attack on one leak, advanced on demand."""

    title: str
    setup: Optional[Setup]  # None for a recorded job
    steps: Iterator[AttackStep]
    budget: int  # iterations the attack may take
    key: object = None  # what it was made from; a different key means a stale job
    recorded: bool = False  # replayed from assets/precomputed, not run in this session
    last: Optional[AttackStep] = None
    frames: list[Frame] = field(default_factory=list)
    losses: list[tuple[int, float, int]] = field(default_factory=list)  # (iteration, loss, restart) per update
    result: Optional[Result] = None
    goal: Optional[tuple[str, int]] = None  # ("stage", 0), ("until", iteration) or ("end", 0)
    compute_s: float = 0.0  # time spent inside the attack, pauses excluded
    error: str = ""
    stopped: bool = False
    order: Optional[list[int]] = None  # the latest matching of dummies to originals (dummy order[i] ~ original i)
    previous_stage: str = ""  # the stage of the step before `last`

    @property
    def running(self) -> bool:
        return self.goal is not None

    @property
    def done(self) -> bool:
        return self.result is not None or bool(self.error) or self.recorded

    @property
    def state(self) -> str:
        """In words, for a progress line."""
        if self.running:
            return "running"
        return "stopped" if self.stopped else "done" if self.done else "paused"

    @property
    def iteration(self) -> int:
        if self.last is not None:
            return self.last.iteration
        return self.frames[-1].iteration if self.frames else 0

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
        if hasattr(self.steps, "close"):
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

    def current(self) -> tuple[np.ndarray, list[int]]:
        """The latest dummies (B, H, W, C) uint8 and their hard labels, in the originals' order."""
        step = self.last
        labels = step.labels if step.labels.dim() == 1 else step.labels.argmax(dim=1)
        order = self.order or list(range(len(labels)))
        return to_uint8(step.images)[order], [int(labels[i]) for i in order]

    def _reached(self, step: AttackStep) -> bool:
        kind, target = self.goal
        if kind == "stage":
            return True
        if kind == "until":
            return step.stage == "update" and step.iteration >= target
        return False

    def _record(self, step: AttackStep) -> None:
        self.previous_stage = self.last.stage if self.last is not None else ""
        self.last = step
        if step.stage == "update":
            self.losses.append((step.iteration, step.loss, step.restart))
        every = max(1, self.budget // 150)
        film = step.stage == "dummy" and step.iteration == 0 and not self.frames
        film |= step.stage == "update" and (step.iteration <= 30 or step.iteration % every == 0)
        film |= step.done
        if film:  # matched to the originals, so frame i shows the guess for private image i
            score = evaluate(step.images.cpu(), self.setup.images.cpu())
            self.order = list(score.order)
            images = to_uint8(step.images)[self.order]
            self.frames.append(Frame(step.iteration, step.loss, score.psnr, self.compute_s, images, step.restart))


def save_jobs(path: Path, jobs: Sequence[Job], meta: dict, frames: int = 40) -> None:
    """Write finished jobs' films (at most `frames` each, the last always kept) and `meta`, e.g. the
    config they ran, to one .npz file."""
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    for i, job in enumerate(jobs):
        keep = sorted(set(np.linspace(0, len(job.frames) - 1, min(frames, len(job.frames))).round().astype(int)))
        film = [job.frames[k] for k in keep]
        arrays[f"{i}.title"] = np.array(job.title)
        arrays[f"{i}.budget"] = np.array(job.budget)
        arrays[f"{i}.compute_s"] = np.array(job.compute_s)
        arrays[f"{i}.numbers"] = np.array([[f.iteration, f.loss, f.psnr, f.seconds, f.restart] for f in film])
        arrays[f"{i}.images"] = np.stack([f.images for f in film])  # (F, B, H, W, C) uint8
        arrays[f"{i}.losses"] = np.array(job.losses, dtype=np.float64).reshape(-1, 3)
    np.savez_compressed(path, **arrays)


def load_jobs(path: Path) -> tuple[list[Job], dict]:
    """Recorded jobs and their meta from `save_jobs`'s file."""
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        jobs = []
        i = 0
        while f"{i}.title" in npz:
            frames = [Frame(int(n[0]), float(n[1]), float(n[2]), float(n[3]), im, int(n[4]))
                      for n, im in zip(npz[f"{i}.numbers"], npz[f"{i}.images"])]
            losses = [(int(it), float(loss), int(r)) for it, loss, r in npz[f"{i}.losses"]]
            jobs.append(Job(title=str(npz[f"{i}.title"]), setup=None, steps=iter(()), budget=int(npz[f"{i}.budget"]),
                            frames=frames, losses=losses, compute_s=float(npz[f"{i}.compute_s"]), recorded=True))
            i += 1
    return jobs, meta


def make_job(title: str, setup: Setup, steps: Iterator[AttackStep], budget: int, key: object = None) -> Job:
    return Job(title=title, setup=setup, steps=steps, budget=budget, key=key)


# -----------------------------------------------------------------------------
# the Stronger-attacks page's runs, shared with scripts/precompute_app_runs.py

RECORDINGS = Path(__file__).resolve().parents[1] / "assets" / "precomputed"
RACE = (("DLG", "dlg"), ("Inverting Gradients", "ig"))


def race_jobs(cfg: Config, setup: Setup, dlg_iterations: int, ig_iterations: int, seconds: float) -> list[Job]:
    """DLG and Inverting Gradients on the same leak, each with its budget and time limit, asked to run to the end."""
    jobs = []
    for (title, name), iterations in zip(RACE, (dlg_iterations, ig_iterations)):
        settings = [f"attack.name={name}", f"attack.iterations={iterations}", f"attack.time_limit={seconds}"]
        c = with_overrides(cfg, settings)
        job = make_job(title, setup, make_attack(c).steps(setup.leak, setup.attacker_labels), int(iterations))
        job.ask("end")
        jobs.append(job)
    return jobs


def sweep_config(cfg: Config, size: int, seconds: float) -> Config:
    """The config of one point of the batch-size sweep: one client, DLG, a time limit."""
    return with_overrides(cfg, [f"data.batch_size={size}", "data.clients=1", "leak.round=0", "attack.name=dlg",
                                "attack.iterations=5000", f"attack.time_limit={seconds}"])


def sweep_jobs(cfg: Config, sizes: Sequence[int], seconds: float, prepare_fn: Callable[[Config], Setup]) -> list[Job]:
    """DLG on batches of each size (same set, model, seed), each for `seconds`, queued."""
    jobs = []
    for size in sorted(sizes):
        c = sweep_config(cfg, size, seconds)
        setup = prepare_fn(c)
        job = make_job(f"{size} image" + ("s" if size > 1 else ""), setup,
                       make_attack(c).steps(setup.leak, setup.attacker_labels), 5000)
        job.ask("end")
        jobs.append(job)
    return jobs


def recording(kind: str, cfg: Config, **params: object) -> Path:
    """Where the recorded runs of `kind` ('race', 'sweep') for this config and these parameters live:
    the name hashes the settings that differ from the defaults, and the parameters."""
    if kind == "sweep":
        cfg = sweep_config(cfg, 1, 0)
    text = json.dumps(encode(cfg), sort_keys=True) + json.dumps(params, sort_keys=True)  # settings new to
    # the engine keep their defaults, so they do not change the key
    return RECORDINGS / f"{kind}-{hashlib.sha1(text.encode()).hexdigest()[:12]}.npz"


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
    reruns so that controls outside the fragment (film slider, downloads) catch up.

    While a job runs the fragment is `ticking` (the browser reruns it every TICK_S); otherwise it is
    `still`, another fragment (Streamlit names a fragment after its function). The full rerun that
    ends a run registers `still` only, so the browser's ticks still in flight find no fragment and
    are dropped on arrival. Were `ticking` still there, a tick arriving after that full rerun ended,
    before its messages had left the server, would start a fresh script runner, and Streamlit
    discards what the old runner had not sent yet: the rerun's start, deltas and end. The browser
    then kept ticking against a page it never saw redrawn (stale page, "Bad delta path index").
    bench/live_end.py measures it."""
    _advance(jobs, together)  # the full run does the first slice itself
    running = any(job.running for job in jobs)
    in_full_run = [True]

    def step() -> None:
        if not in_full_run[0]:
            _advance(jobs, together)
        draw()
        if not in_full_run[0] and any(job.running for job in jobs) != running:
            st.rerun()  # a run ended (or began) in here: the page and the fragment's kind must follow

    def ticking() -> None:
        step()

    def still() -> None:
        step()

    st.fragment(ticking if running else still, run_every=TICK_S if running else None, key=key)()
    in_full_run[0] = False
