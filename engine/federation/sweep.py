"""A sweep over one federation setting (the attacker share, the aggregator, the trim ...): one run per value.

    for point in federated_sweep(config, "federation.attackers", ["0", "0.1", "0.2"]): ...
    save_federated_sweep(out, "federation.attackers", points)   # sweep.csv, and each run's files beside it

Each value is a whole federated run (`run_history`); a value the config refuses (Krum with too many
attackers, say) stops the sweep before any run, with the config's one-line message.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from ..config import Config, with_overrides
from .history import History
from .poison import attackers
from .report import save_history
from .simulate import run_history

__all__ = ["FederatedPoint", "federated_sweep", "save_federated_sweep", "SWEEP_COLUMNS"]

SWEEP_COLUMNS = ("value", "accuracy", "best_accuracy", "attack_success", "honest_cosine", "attackers_weight",
                 "honest_dropped", "virtual_seconds")


@dataclass(frozen=True, eq=False)
class FederatedPoint:
    """One value of the swept setting and the run it gave."""

    value: str
    history: History

    def row(self) -> dict[str, object]:
        records = self.history.records
        last = records[-1]
        bad = attackers(self.history.config)
        weights = [w for r in records for c, w in r.kept if c in bad]
        dropped = [sum(1 for c, w in r.kept if w == 0.0 and c not in bad) for r in records]
        cosines = [r.honest_cosine for r in records if r.honest_cosine is not None]
        return {
            "value": self.value, "accuracy": last.accuracy, "best_accuracy": max(r.accuracy for r in records),
            "attack_success": "" if last.attack_success is None else last.attack_success,
            "honest_cosine": sum(cosines) / len(cosines) if cosines else "",  # mean over the poisoned rounds
            "attackers_weight": sum(weights) / len(weights) if weights else "",  # mean weight an attacker got
            "honest_dropped": sum(dropped) / len(dropped) if any(r.kept for r in records) else "",  # per round
            "virtual_seconds": last.virtual_seconds,
        }


def federated_sweep(config: Config, param: str, values: Sequence[str]) -> Iterator[FederatedPoint]:
    """Run `config` once per value of `param`; every value is checked before the first run."""
    configs = [with_overrides(config, [f"{param}={v}"]) for v in values]
    for value, one in zip(values, configs):
        yield FederatedPoint(value, run_history(one))


def save_federated_sweep(out: str | Path, param: str, points: Sequence[FederatedPoint]) -> dict[str, Path]:
    """sweep.csv (one row per value) in `out`, and each run's config, rounds.csv, history.json and
    curves.png in `out/<param>=<value>/`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"sweep": out / "sweep.csv"}
    with paths["sweep"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["param", *SWEEP_COLUMNS])
        writer.writeheader()
        for point in points:
            writer.writerow({"param": param, **point.row()})
    for point in points:
        folder = out / f"{param}={point.value}"
        save_history(folder, point.history)
        paths[point.value] = folder
    (out / "sweep.json").write_text(json.dumps({"param": param, "values": [p.value for p in points]}) + "\n")
    return paths
