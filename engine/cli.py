"""The command line: `python -m engine example-config`, `run`, `sweep` and `simulate`.

    python -m engine example-config > my.json                  # the default: DLG on one bundled MNIST digit
    python -m engine run my.json --set data.batch_size=4 --out runs/b4
    python -m engine sweep --param defence.dp.noise_multiplier --values 0,1e-3,1e-1 --utility --out runs/noise
    python -m engine simulate --set federation.dropout=0.2 --out runs/fl   # federated training on Flower
    python -m engine sweep --param federation.attackers --values 0,0.1,0.2 --set federation.attack=sign_flip --out runs/f

`run` calls the same functions as the app and the tests (`prepare`, `make_attack`, `finish`,
`save_run`). Bad input ends with one line `error: ...` and exit code 2; Ctrl-C stops the attack,
keeps what it has (reason "stopped by user") and exits with 130.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, TypeVar

from .config import Config, ConfigError, from_json, to_json, with_overrides

__all__ = ["main"]

T = TypeVar("T")
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine", description="Gradient Inversion Lab: leak a federated update and invert it."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    overrides = dict(action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="change one setting, e.g. data.batch_size=4 (JSON value or plain string); repeatable")
    example = commands.add_parser("example-config", help="print the default config as JSON")
    example.add_argument("--set", dest="overrides", **overrides)
    run = commands.add_parser("run", help="run one attack and write config.json, metrics.json, reconstruction.png")
    run.add_argument("config", nargs="?", type=Path, help="a config JSON file (default: the example config)")
    run.add_argument("--set", dest="overrides", **overrides)
    run.add_argument("--out", required=True, type=Path, help="folder for the three output files")
    sweep = commands.add_parser("sweep", help="attack (and train, with --utility) at each value of one setting; "
                                "write sweep.csv and sweep.png")
    sweep.add_argument("config", nargs="?", type=Path, help="a config JSON file (default: the example config)")
    sweep.add_argument("--set", dest="overrides", **overrides)
    sweep.add_argument("--param", required=True, metavar="SECTION.KEY", help="the setting to sweep")
    sweep.add_argument("--values", required=True, help="comma-separated values, e.g. 0,1e-3,1e-2,1e-1")
    sweep.add_argument("--utility", action="store_true", help="also train a model by FedAvg under each value")
    sweep.add_argument("--rounds", type=int, default=10, help="FedAvg rounds for --utility (default 10)")
    sweep.add_argument("--clients", type=int, default=5, help="FedAvg clients for --utility (default 5)")
    sweep.add_argument("--out", required=True, type=Path, help="folder for sweep.csv and sweep.png")
    fl = commands.add_parser("simulate", help="federated training on Flower, round by round; write config.json, "
                             "rounds.csv, history.json and curves.png")
    fl.add_argument("config", nargs="?", type=Path, help="a config JSON file (default: the example config with "
                    "the ConvNet, which learns in a few rounds)")
    fl.add_argument("--set", dest="overrides", **overrides)
    fl.add_argument("--out", required=True, type=Path, help="folder for the four output files")
    return parser


def _load(path: Optional[Path], overrides: Sequence[str], default: Optional[Config] = None) -> Config:
    """The config file (or `default`, else the example config) with the overrides applied. Raises ConfigError or OSError."""
    config = default or Config()
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} not found")
        try:
            config = from_json(path.read_text())
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    return with_overrides(config, overrides)


def _collect(items: Iterator[T], total: int, desc: str, unit: str, postfix: Callable[[T], dict]) -> tuple[list[T], bool]:
    """Drain `items` under a progress bar of `total` steps; Ctrl-C keeps what came. Returns (items, stopped)."""
    from tqdm import tqdm

    done, stopped = [], False
    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr) as bar:
        try:
            for item in items:
                done.append(item)
                bar.set_postfix(**postfix(item), refresh=False)
                bar.update(1)
        except KeyboardInterrupt:
            stopped = True
        finally:
            if hasattr(items, "close"):
                items.close()  # a generator's work (a Flower server thread) ends with it
    return done, stopped


def _attack(setup, config: Config):
    """Run the attack under a progress bar; returns (the step to report or None, stopped by the user?):
    the summary step of a finished attack; on a stop, the lowest-loss step seen so far (the last one
    may be a fresh restart's grey dummies)."""
    from tqdm import tqdm

    from .experiment import make_attack

    a = config.attack
    attack = make_attack(config)
    per_restart = (attack.steps_per_restart(setup.leak) if hasattr(attack, "steps_per_restart")  # vae_prior
                   else attack.settings.iterations)
    steps = attack.steps(setup.leak, setup.attacker_labels)
    step, best, stopped = None, None, False
    with tqdm(total=a.restarts * per_restart, desc=a.name, unit="it", file=sys.stderr) as bar:
        try:
            for step in steps:
                if step.done:  # the summary step: the bar stays where the attack really stopped
                    continue
                if math.isfinite(step.loss) and (best is None or step.loss < best.loss):
                    best = step
                position = min(bar.total, step.restart * per_restart + step.iteration)
                bar.set_postfix(loss=f"{step.loss:.3g}", best=f"{step.best_loss:.3g}", refresh=False)
                bar.update(position - bar.n)
        except KeyboardInterrupt:
            stopped = True
        finally:
            steps.close()  # nothing of the attack keeps running
    return (best or step) if stopped else step, stopped


def _run(args: argparse.Namespace) -> int:
    """The `run` command: load, prepare, attack, score, save, summarise."""
    config = _load(args.config, args.overrides)
    # Imported here so that `example-config` and bad-input errors answer without loading torch.
    from .experiment import finish, prepare
    from .report import save_config, save_run

    setup = prepare(config)
    save_config(config, args.out)  # first, so even a stopped run says what it was
    step, stopped = _attack(setup, config)
    if step is None:  # stopped before the first step: only the config exists
        print(f"stopped by user before the attack began; config in {args.out / 'config.json'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if stopped:
        step = replace(step, done=True, reason="stopped by user")
    result = finish(setup, step)
    written = save_run(args.out, setup, result)
    e = result.evaluation
    labels = "n/a" if e.label_accuracy is None else f"{e.label_accuracy:.0%}"
    print(
        f"PSNR {e.psnr:.1f} dB, SSIM {e.ssim:.3f}, labels {labels}, {result.seconds:.2f} s, "
        f"{result.iterations} iterations ({result.reason}) -> {args.out}/ "
        f"({', '.join(path.name for path in written.values())})"
    )
    return EXIT_INTERRUPTED if stopped else 0


def _sweep(args: argparse.Namespace) -> int:
    """The `sweep` command: one point per value under a progress bar, then the CSV, the plot and a table."""
    values = [v.strip() for v in args.values.split(",") if v.strip()]
    if not values:
        raise ConfigError("--values needs at least one value")
    if args.param.startswith("federation."):
        return _federated_sweep(args, values)
    config = _load(args.config, args.overrides)
    if args.rounds < 1 or args.clients < 1:
        raise ConfigError(f"--rounds and --clients must be >= 1, got {args.rounds} and {args.clients}")
    from .sweep import sweep_points
    from .utility import Training
    from .report import save_sweep

    training = Training(rounds=args.rounds, clients=args.clients) if args.utility else None
    points, stopped = _collect(sweep_points(config, args.param, values, training), len(values), args.param, "value",
                               lambda point: {"value": point.value, "psnr": f"{point.psnr:.1f}"})
    if not points:
        print("stopped by user before the first value finished", file=sys.stderr)
        return EXIT_INTERRUPTED
    save_sweep(args.out, args.param, points)
    print(f"{args.param:>28}  PSNR dB  epsilon  accuracy")
    for p in points:
        eps = "-" if p.epsilon is None else f"{p.epsilon:.3g}"
        acc = "-" if p.accuracy is None else f"{p.accuracy:.1%}"
        print(f"{p.value:>28}  {p.psnr:7.1f}  {eps:>7}  {acc:>8}")
    print(f"-> {args.out}/ (sweep.csv, sweep.png)")
    return EXIT_INTERRUPTED if stopped else 0


def _federated_sweep(args: argparse.Namespace, values: list[str]) -> int:
    """`sweep --param federation.KEY`: one federated run per value; sweep.csv and each run's files."""
    from .config import ModelConfig

    config = _load(args.config, args.overrides, Config(model=ModelConfig(name="convnet")))
    for v in values:  # every value checked before the first run (Krum's n > 2f + 2, ...)
        with_overrides(config, [f"{args.param}={v}"])
    from .federation.sweep import federated_sweep, save_federated_sweep

    points, stopped = _collect(federated_sweep(config, args.param, values), len(values), args.param, "run",
                               lambda p: {"value": p.value, "accuracy": f"{p.history.records[-1].accuracy:.1%}"})
    if not points:
        print("stopped by user before the first run finished; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    save_federated_sweep(args.out, args.param, points)
    print(f"{args.param:>28}  accuracy  attack success")
    for p in points:
        row = p.row()
        success = "-" if row["attack_success"] == "" else f"{row['attack_success']:.1%}"
        print(f"{p.value:>28}  {row['accuracy']:8.1%}  {success:>14}")
    print(f"-> {args.out}/ (sweep.csv, and config.json, rounds.csv, history.json, curves.png per value)")
    return EXIT_INTERRUPTED if stopped else 0


def _simulate(args: argparse.Namespace) -> int:
    """The `simulate` command: a progress bar per round, then the files; Ctrl-C keeps the finished rounds."""
    from .config import ModelConfig

    config = _load(args.config, args.overrides, Config(model=ModelConfig(name="convnet")))
    from .federation import History, simulate
    from .federation.report import save_history

    initial: list[float] = []
    rounds = simulate(config, lambda loss, accuracy: initial.extend([loss, accuracy]))
    records, stopped = _collect(rounds, config.federation.rounds, "rounds", "round", lambda r: {
        "accuracy": f"{r.accuracy:.1%}", "replied": f"{r.replied}/{r.sampled}",
        "epsilon": "-" if r.epsilon is None else f"{r.epsilon:.3g}"})
    if not records:
        print("stopped by user before the first round finished; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    history = History(config, initial[1], initial[0], tuple(records), stopped)
    paths = save_history(args.out, history)
    last = records[-1]
    eps = "" if last.epsilon is None else f", epsilon {last.epsilon:.3g} at delta {config.defence.dp.delta:g}"
    aborted = sum(1 for r in records if r.aborted)
    clock = (f"{last.virtual_seconds:.0f} virtual seconds" if math.isfinite(last.virtual_seconds)
             else f"no virtual clock ({config.federation.backend})")
    print(
        f"{len(records)} rounds{' (stopped by user)' if stopped else ''}: test accuracy "
        f"{history.initial_accuracy:.1%} -> {last.accuracy:.1%}, {clock}{eps}"
        f"{f', {aborted} rounds aborted' if aborted else ''} -> {args.out}/ ({', '.join(p.name for p in paths.values())})"
    )
    return EXIT_INTERRUPTED if stopped else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the command, return the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "example-config":
            print(to_json(with_overrides(Config(), args.overrides)))
            return 0
        if args.command == "simulate":
            return _simulate(args)
        return _sweep(args) if args.command == "sweep" else _run(args)
    except BrokenPipeError:  # e.g. `example-config | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, OSError) as err:  # ConfigError is a ValueError; so are the data's checks
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # outside the attack (loading, scoring, writing): nothing worth keeping
        print("stopped by user", file=sys.stderr)
        return EXIT_INTERRUPTED
