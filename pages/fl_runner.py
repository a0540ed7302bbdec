"""Live federated runs for the pages: a `FederationJob` drains `engine.federation.simulate` a round at a time.

It has the attack jobs' shape (`running`, `advance`, `stop`), so `runner.live` drives it in a fragment:
the page redraws after each round and Stop takes effect at the next round's end. The default run of
a page is recorded in assets/precomputed (scripts/precompute_app_runs.py) and shows at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from engine.config import Config
from engine.federation import History, RoundRecord, simulate
from pages.common import encode

LOG = logging.getLogger(__name__)
RECORDINGS = Path(__file__).resolve().parents[1] / "assets" / "precomputed"
RUN_KEYS = ("seed", "data.dataset", "data.split", "data.alpha", "data.shards_per_client", "data.root", "model.",
            "defence.", "federation.")  # the settings a federated run depends on (a prefix ending in "." is a section)


@dataclass(eq=False)
class FederationJob:
    """One federated run, advanced on demand (or replayed from a recording)."""

    config: Config
    steps: Iterator[RoundRecord] = field(default_factory=lambda: iter(()))
    records: list[RoundRecord] = field(default_factory=list)
    initial: Optional[tuple[float, float]] = None  # (loss, accuracy) of the untrained model
    recorded: bool = False
    goal: bool = False
    error: str = ""
    stopped: bool = False
    compute_s: float = 0.0

    @classmethod
    def start(cls, config: Config) -> "FederationJob":
        job = cls(config)
        job.steps = simulate(config, lambda loss, accuracy: setattr(job, "initial", (loss, accuracy)))
        job.goal = True
        return job

    @classmethod
    def replay(cls, history: History) -> "FederationJob":
        return cls(history.config, records=list(history.records),
                   initial=(history.initial_loss, history.initial_accuracy), recorded=True)

    @property
    def running(self) -> bool:
        return self.goal

    @property
    def done(self) -> bool:
        return self.recorded or bool(self.error) or (not self.goal and len(self.records) == self.config.federation.rounds)

    def advance(self, seconds: float) -> None:
        """Run rounds for about `seconds` (a round is never cut)."""
        deadline = time.perf_counter() + seconds
        while self.goal:
            started = time.perf_counter()
            try:
                self.records.append(next(self.steps))
            except StopIteration:
                self.goal = False
            except Exception as err:  # noqa: BLE001 - a bad setting or a bug: say so, keep the session
                LOG.exception("federated run failed")
                self.error, self.goal = f"The run stopped: {' '.join(str(err).split())}", False
            finally:
                self.compute_s += time.perf_counter() - started
            if time.perf_counter() > deadline:
                break

    def stop(self) -> None:
        if self.goal:
            self.stopped = True
        self.close()

    def close(self) -> None:
        self.goal = False
        if hasattr(self.steps, "close"):
            self.steps.close()

    def history(self) -> Optional[History]:
        if self.initial is None:
            return None
        return History(self.config, self.initial[1], self.initial[0], tuple(self.records), self.stopped)


def run_key(config: Config) -> str:
    """A short hash of the settings a federated run depends on that differ from the defaults (so a
    setting new to the engine keeps its default and leaves the key as it was)."""
    changed = {k: v for k, v in encode(config).items() if any(k == r or (r.endswith(".") and k.startswith(r))
                                                              for r in RUN_KEYS)}
    return hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:12]


def recording(config: Config) -> Path:
    return RECORDINGS / f"federation-{run_key(config)}.json"


def recorded(config: Config) -> Optional[FederationJob]:
    """The recorded run of exactly this config, if one ships."""
    path = recording(config)
    if not path.is_file():
        return None
    try:
        return FederationJob.replay(History.from_dict(json.loads(path.read_text())))
    except (ValueError, KeyError, TypeError) as err:  # an old or broken recording: run it instead
        LOG.warning("ignoring recording %s: %s", path, err)
        return None
