"""Record the app's slow default runs, so its pages open on a result instead of an empty chart.

The Stronger-attacks page races DLG against Inverting Gradients (about 20 s) and sweeps the batch
size (about 30 s). On 2 CPU cores that is long for a first impression, so this script runs the same
jobs, with the same code and the page's default parameters, for the configs a visitor meets first
(the default, and the lecture-mode preset), and writes their films to assets/precomputed/. The page
shows a recording only when its config and parameters match exactly, and says that it is one.

    python scripts/precompute_app_runs.py            # rewrites assets/precomputed/*.npz
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import Config, with_overrides  # noqa: E402
from engine.experiment import prepare  # noqa: E402
from pages.runner import RECORDINGS, race_jobs, recording, save_jobs, sweep_jobs  # noqa: E402

# the Stronger-attacks page's defaults (keep in step with pages/stronger.py)
RACE = dict(dlg=300, ig=1000, seconds=20.0)
SWEEP = dict(sizes=[1, 2, 4, 8], seconds=8.0)
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


def main() -> None:
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
    total = sum(p.stat().st_size for p in written)
    print(f"{len(written)} recordings, {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
