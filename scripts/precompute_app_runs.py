"""Record the app's slow default runs, so its pages open on a result instead of an empty chart.

The Stronger-attacks page races DLG against Inverting Gradients (about 20 s) and sweeps the batch
size (about 30 s). On 2 CPU cores that is long for a first impression, so this script runs the same
jobs, with the same code and the page's default parameters, for the configs a visitor meets first
(the default, and the lecture-mode preset), and writes their films to assets/precomputed/. The page
shows a recording only when its config and parameters match exactly, and says that it is one.

    python scripts/precompute_app_runs.py                     # rewrites assets/precomputed/*
    python scripts/precompute_app_runs.py --federation-only   # only the FL page's run (about a minute)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import Config, with_overrides  # noqa: E402
from engine.experiment import prepare  # noqa: E402
from engine.federation import run_history  # noqa: E402
from engine.federation.report import json_safe  # noqa: E402
from pages.fl_runner import recording as fl_recording  # noqa: E402
from pages.runner import RECORDINGS, race_jobs, recording, save_jobs, sweep_jobs  # noqa: E402

# the Stronger-attacks page's defaults (keep in step with pages/stronger.py)
RACE = dict(dlg=300, ig=1000, seconds=20.0)
SWEEP = dict(sizes=[1, 2, 4, 8], seconds=8.0)
FEDERATIONS = {  # keep in step with pages/federation.py: the model the page picks, DP per image
    "default": with_overrides(Config(), ["model.name=convnet", "defence.dp.level=example"]),
}
CONFIGS = {
    "default": Config(),
    "lecture step 7": with_overrides(Config(), ["data.batch_size=4"]),
}


def drain(jobs) -> None:
    for job in jobs:
        while job.running:
            job.advance(60.0)
        last = job.frames[-1]
        print(f"    {job.title:22s} iteration {last.iteration:5d}  PSNR {last.psnr:5.1f} dB  {job.compute_s:5.1f} s")


def record_federations() -> set[Path]:
    """The "A real FL run" page's default run (its own model choice, the ConvNet), as history JSON."""
    written = set()
    for name, cfg in FEDERATIONS.items():
        path = fl_recording(cfg)
        print(f"federation, {name} -> {path.relative_to(ROOT)}")
        started = time.perf_counter()
        history = run_history(cfg)
        path.write_text(json.dumps(json_safe(history.to_dict())) + "\n")
        print(f"    {len(history.records)} rounds, accuracy {history.records[-1].accuracy:.1%}, "
              f"{time.perf_counter() - started:.0f} s")
        written.add(path)
    return written


def main() -> None:
    if "--federation-only" in sys.argv:
        record_federations()
        return
    RECORDINGS.mkdir(parents=True, exist_ok=True)
    written = set()
    for name, cfg in CONFIGS.items():
        race = recording("race", cfg, **RACE)
        if race not in written:
            print(f"race, {name} -> {race.relative_to(ROOT)}")
            setup = prepare(cfg)
            jobs = race_jobs(cfg, setup, RACE["dlg"], RACE["ig"], RACE["seconds"])
            drain(jobs)
            save_jobs(race, jobs, {"kind": "race", "config": name, "made": time.strftime("%Y-%m-%d"), **RACE})
            written.add(race)
        sweep = recording("sweep", cfg, **SWEEP)
        if sweep not in written:
            print(f"sweep, {name} -> {sweep.relative_to(ROOT)}")
            jobs = sweep_jobs(cfg, SWEEP["sizes"], SWEEP["seconds"], prepare)
            drain(jobs)
            save_jobs(sweep, jobs, {"kind": "sweep", "config": name, "made": time.strftime("%Y-%m-%d"), **SWEEP})
            written.add(sweep)
    written |= record_federations()
    total = sum(p.stat().st_size for p in written)
    print(f"{len(written)} recordings, {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
