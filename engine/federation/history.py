"""What a federated run leaves behind: one record per round, and the files the CLI writes.

    for record in simulate(config): ...      # RoundRecord per round
    history = History(config, initial, records)
    history.rows()                            # rounds.csv
    history.to_dict()                         # history.json (with every client's timeline)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from ..config import Config, to_dict
from .clock import ClientTiming
from .strategy import ServerView

__all__ = ["RoundRecord", "History", "CSV_COLUMNS"]

CSV_COLUMNS = ("round", "virtual_seconds", "round_seconds", "sampled", "replied", "dropped", "straggled",
               "bytes_up", "bytes_down", "accuracy", "loss", "epsilon", "attack_success", "honest_cosine", "aborted")


@dataclass(frozen=True, eq=False)
class RoundRecord:
    """One server round as the lab reports it."""

    round: int
    virtual_seconds: float  # the clock at the round's end (NaN where the backend has no clock)
    round_seconds: float
    sampled: int
    replied: int
    dropped: int
    straggled: int
    bytes_up: int  # all sampled clients together, keys and shares of secure aggregation included
    bytes_down: int
    accuracy: float  # on the bundled test sample, after the round, a fraction 0-1
    loss: float
    epsilon: Optional[float]  # spent so far at defence.dp.delta; None without noise
    aborted: str = ""  # why the round applied no aggregate
    attack_success: Optional[float] = None  # poisoned runs with a backdoor: share of triggered test images misled
    honest_cosine: Optional[float] = None  # poisoned rounds: cos(applied aggregate, the honest clients' FedAvg)
    clients: tuple[int, ...] = ()  # partition ids whose replies were aggregated
    kept: tuple[tuple[int, float], ...] = ()  # robust aggregation: (client, weight it got; 0 = dropped)
    timings: tuple[ClientTiming, ...] = ()  # each sampled client's phases (in-process backend)
    view: Optional[ServerView] = field(default=None, repr=False)  # kept on request (federation.keep_views)

    def row(self) -> dict[str, object]:
        """The record as a rounds.csv row."""
        out = {key: getattr(self, key) for key in CSV_COLUMNS}
        out["epsilon"] = "" if self.epsilon is None else self.epsilon
        out["attack_success"] = "" if self.attack_success is None else self.attack_success
        out["honest_cosine"] = "" if self.honest_cosine is None else self.honest_cosine
        return out

    def to_dict(self) -> dict:
        out = self.row()
        out["epsilon"], out["attack_success"], out["honest_cosine"] = self.epsilon, self.attack_success, self.honest_cosine
        out["clients"] = list(self.clients)
        out["kept"] = [list(k) for k in self.kept]
        out["timings"] = [asdict(t) for t in self.timings]
        return out


@dataclass(frozen=True, eq=False)
class History:
    """A whole run: its config, the model before round 1, and every round."""

    config: Config
    initial_accuracy: float
    initial_loss: float
    records: tuple[RoundRecord, ...]
    stopped: bool = False

    def rows(self) -> list[dict[str, object]]:
        return [r.row() for r in self.records]

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        """The History `to_dict` wrote (views are never written: rerun with keep_views to attack a round)."""
        from ..config import Config, from_dict

        def nan(value):  # JSON has no NaN: null stands for "no clock"
            return float("nan") if value is None else value

        records = []
        for r in data["rounds"]:
            timings = tuple(ClientTiming(**t) for t in r.get("timings", ()))
            fields = {k: r[k] for k in CSV_COLUMNS if k in r}
            fields["virtual_seconds"], fields["round_seconds"] = nan(r["virtual_seconds"]), nan(r["round_seconds"])
            records.append(RoundRecord(**fields, clients=tuple(r.get("clients", ())),
                                       kept=tuple(tuple(k) for k in r.get("kept", ())), timings=timings))
        initial = data["initial"]
        return cls(from_dict(Config, data["config"]), initial["accuracy"], initial["loss"], tuple(records),
                   bool(data.get("stopped", False)))

    def to_dict(self) -> dict:
        return {
            "config": to_dict(self.config),
            "initial": {"accuracy": self.initial_accuracy, "loss": self.initial_loss},
            "stopped": self.stopped,
            "rounds": [r.to_dict() for r in self.records],
        }
