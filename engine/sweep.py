"""Privacy against utility: one setting swept over values, the attack (and a training run) at each.

    for point in sweep_points(config, "defence.dp.noise_multiplier", ["0", "1e-3", "1e-1"], Training()):
        print(point.value, point.psnr, point.epsilon, point.accuracy)

Each point is the config with one override: the attack runs on the round it describes, as
`python -m engine run` would, and, given a `Training`, a fresh model is trained by FedAvg under
the same defence (`fedavg_accuracy`). The points are the data for the curves: PSNR against sigma
with epsilon, accuracy against sigma, PSNR against compression. It sits above `engine.experiment`
and `engine.defences` (it runs experiments under defences), not inside the defences.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Optional, Sequence

from .config import Config, with_overrides
from .defences import defence_metrics
from .experiment import finish, make_attack, prepare
from .utility import Training, fedavg_accuracy

__all__ = ["SweepPoint", "sweep_points", "sweep"]


@dataclass(frozen=True)
class SweepPoint:
    """The attack's scores, the privacy spent and the model quality at one value of the swept setting."""

    value: str  # the setting's value, as given
    psnr: float  # dB, attack on the leaked round
    ssim: float
    label_accuracy: Optional[float]
    epsilon: Optional[float]  # of the leaked round, at the config's delta; None without noise
    compression_ratio: Optional[float]  # None without compression
    accuracy: Optional[float] = None  # test accuracy after FedAvg training under the defence
    training_epsilon: Optional[float] = None  # what that whole training run spent

    def row(self) -> dict[str, object]:
        """The point as a CSV row (None -> empty)."""
        return {k: "" if v is None else v for k, v in self.__dict__.items()}


def sweep_points(
    config: Config, param: str, values: Sequence[str], training: Optional[Training] = None
) -> Iterator[SweepPoint]:
    """Yield one `SweepPoint` per value of `param` (a dotted config key). All values are checked first."""
    configs = [with_overrides(config, [f"{param}={value}"]) for value in values]  # ConfigError before any work
    for value, cfg in zip(values, configs):
        setup = prepare(cfg)
        step = None
        for step in make_attack(cfg).steps(setup.leak, setup.attacker_labels):
            pass
        e = finish(setup, step).evaluation
        extra = defence_metrics(cfg, setup.leak.update, len(setup.dataset)) if cfg.defence.active else {}
        point = SweepPoint(
            value, e.psnr, e.ssim, e.label_accuracy, extra.get("epsilon"), extra.get("compression_ratio")
        )
        if training is not None:
            trained = fedavg_accuracy(cfg.defence, replace(training, dataset=cfg.data.dataset, seed=cfg.seed))
            point = replace(point, accuracy=trained.accuracy, training_epsilon=trained.epsilon)
        yield point


def sweep(config: Config, param: str, values: Sequence[str], training: Optional[Training] = None) -> list[SweepPoint]:
    """All the points of `sweep_points`."""
    return list(sweep_points(config, param, values, training))
