"""Clean, attacked and defended: the same federated run three times, and what each left behind.

    for label, outcome in compare(config): ...        # "clean", "attacked", "defended", in that order
    outcome.accuracy, outcome.attack_success           # per round, round 0 first (accuracy)
    outcome.honest_cosine                              # per round: cos(the step, the honest clients' FedAvg)
    outcome.kept                                       # per round: {client: weight it got}
    outcome.trigger                                    # backdoor: one test digit, with and without the trigger

The clean run is FedAvg with nobody attacking; the attacked run is FedAvg under `federation.attack`;
the defended run is the same attack under `federation.strategy`. Same seed, same clients, same
sampling: only the attackers and the aggregator change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator, Optional

import torch
from torch.func import functional_call

from ..config import ROBUST, Config, with_overrides
from .client_app import architecture
from .poison import add_trigger, attackers
from .simulate import run_history
from .task import federated_data

__all__ = ["RunOutcome", "TriggerTest", "compare", "run_outcome", "three_configs", "trigger_images"]


@dataclass(frozen=True)
class TriggerTest:
    """What the final model says about one test digit, as it is and with the backdoor's trigger."""

    index: int  # row of the test sample
    label: int
    clean_prediction: int
    triggered_prediction: int
    clean_confidence: float  # softmax probability of the prediction
    triggered_confidence: float


@dataclass(frozen=True)
class RunOutcome:
    """One run, reduced to what the page and the CSV show (JSON-able)."""

    strategy: str
    attack: str
    accuracy: tuple[float, ...]  # round 0 (the initial model) first
    attack_success: tuple[Optional[float], ...]  # per round 1..R
    kept: tuple[dict[int, float], ...]  # per round; {} for FedAvg (everyone at full weight)
    replied: tuple[tuple[int, ...], ...]  # per round
    attackers: tuple[int, ...]
    trigger: Optional[TriggerTest] = None
    honest_cosine: tuple[Optional[float], ...] = ()  # per round 1..R: the step against the honest clients' FedAvg

    def to_dict(self) -> dict:
        out = asdict(self)
        out["kept"] = [{str(c): w for c, w in k.items()} for k in self.kept]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "RunOutcome":
        kept = tuple({int(c): float(w) for c, w in k.items()} for k in d["kept"])
        trigger = TriggerTest(**d["trigger"]) if d.get("trigger") else None
        return cls(d["strategy"], d["attack"], tuple(d["accuracy"]), tuple(d["attack_success"]), kept,
                   tuple(tuple(r) for r in d["replied"]), tuple(d["attackers"]), trigger,
                   tuple(d.get("honest_cosine", ())))


def run_outcome(config: Config) -> RunOutcome:
    """Run `config` and reduce it; a backdoor run also tests one digit with and without the trigger."""
    f = config.federation
    if f.attack == "backdoor":
        config = with_overrides(config, [f"federation.keep_views=[{f.rounds}]"])
    history = run_history(config)
    records = history.records
    trigger = None
    if f.attack == "backdoor" and records and records[-1].view is not None:
        view = records[-1].view
        final = {k: view.params[k] - view.aggregate[k] for k in view.params}  # w_{R} = w_{R-1} - Delta
        trigger = trigger_test(config, final)
    return RunOutcome(
        f.strategy, f.attack, (history.initial_accuracy,) + tuple(r.accuracy for r in records),
        tuple(r.attack_success for r in records), tuple(dict(r.kept) for r in records),
        tuple(r.clients for r in records), tuple(sorted(attackers(config))), trigger,
        tuple(r.honest_cosine for r in records),
    )


def trigger_test(config: Config, params: dict[str, torch.Tensor]) -> TriggerTest:
    """The first test digit not of the target class: the model's answer without and with the trigger."""
    data = federated_data(config)
    p = config.federation.poison
    index = int((data.test_labels != p.target).nonzero()[0])
    x = data.test_images[index:index + 1]
    pair = torch.cat([x, add_trigger(x, p.trigger)])  # (2, C, H, W)
    with torch.no_grad():
        probs = functional_call(architecture(config, data.num_classes), params, (pair,)).softmax(1)
    conf, pred = probs.max(1)
    return TriggerTest(index, int(data.test_labels[index]), int(pred[0]), int(pred[1]), float(conf[0]), float(conf[1]))


def trigger_images(config: Config, index: int) -> torch.Tensor:
    """(2, C, H, W): test digit `index` as the data set holds it, and with the trigger."""
    from ..data import load_dataset

    x = load_dataset(config.data.dataset, "test", root=config.data.root, download=config.data.download).images
    x = x[index:index + 1]
    return torch.cat([x, add_trigger(x, config.federation.poison.trigger)])


def three_configs(config: Config) -> dict[str, Config]:
    """The clean (FedAvg, nobody attacks), the attacked (FedAvg) and the defended run of `config`."""
    robust = config.federation.strategy in ROBUST
    assumed = [f"federation.robust.byzantine={config.federation.byzantine}"] * robust  # plans for f, attacked or not
    return {
        "clean": with_overrides(config, ["federation.attack=none", "federation.strategy=fedavg"]),
        "attacked": with_overrides(config, ["federation.strategy=fedavg"]),
        "defended": with_overrides(config, assumed),
    }


def compare(config: Config) -> Iterator[tuple[str, RunOutcome]]:
    """The clean, the attacked and the defended run of `config`, one at a time (each takes seconds)."""
    for label, one in three_configs(config).items():
        yield label, run_outcome(one)
