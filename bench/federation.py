"""Benchmark: the federated run on Flower. Prints tables; the README records one real run.

    python bench/federation.py                       # parts 1-3 (about 15 minutes on 2 busy cores)
    python bench/federation.py --parts 1             # the grid's own overhead only (seconds)
    python bench/federation.py --parts 2 --rows iid,dirichlet
    python bench/federation.py --parts 3 --attack-seconds 60
    python bench/federation.py --parts 4             # Ray against in process (needs requirements-ray.txt)

1. Overhead of the in-process grid: 1000 clients x 3 rounds, every client sampled, each a trivial
   ClientApp that sends back the weights it got (the MLP of width 8), the server's test included.
   Wall seconds and the growth of the process's peak RSS during the run (torch's own import excluded).
2. Training: the ConvNet on the bundled MNIST train sample (4000 images after the attacker's 1000),
   100 clients, 10 sampled a round, 20 rounds of 5 local epochs (B = 16, lr 0.1): IID, Dirichlet 0.1,
   DP-SGD sigma 1 and 0.3 (clip C = 10, epsilon at delta 1e-5), secure aggregation (bytes and seconds).
3. Leakage as the model trains: DLG and the VAE prior on one client's reply in rounds 1, 5 and 20
   of the IID run (40 images after 13 local steps), same time budget each.
4. Flower's Simulation Runtime (Ray) against the in-process grid (bench/federation_ray.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flwr.app import Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from engine.config import Config, with_overrides  # noqa: E402
from engine.experiment import finish, make_attack, prepare  # noqa: E402
from engine.federation import run_history  # noqa: E402
from engine.federation.grid import InProcessGrid  # noqa: E402
from engine.federation.server_app import run_server  # noqa: E402
from engine.federation.views import server_view  # noqa: E402

TRAINING = ["model.name=convnet", "federation.clients=100", "federation.fraction=0.1", "federation.rounds=20",
            "federation.local_epochs=5", "federation.batch_size=16", "federation.lr=0.1"]
ROWS = {
    "iid": [],
    "dirichlet": ["data.split=dirichlet", "data.alpha=0.1"],
    "dp": ["defence.dp.noise_multiplier=1.0", "defence.dp.clip=10"],
    "dp0.3": ["defence.dp.noise_multiplier=0.3", "defence.dp.clip=10"],
    "secure": ["defence.secure_aggregation=true"],
}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def overhead(clients: int = 1000, rounds: int = 3) -> None:
    """Part 1: the grid with a ClientApp that does no work."""
    echo = ClientApp()

    @echo.train()
    def train(msg: Message, context: Context) -> Message:
        metrics = MetricRecord({"num-examples": 1, "partition-id": int(context.node_config["partition-id"])})
        return Message(content=RecordDict({"arrays": msg.content["arrays"], "metrics": metrics}), reply_to=msg)

    cfg = with_overrides(Config(), ["model.name=mlp", "model.width=8", f"federation.clients={clients}",
                                    "federation.fraction=1.0", f"federation.rounds={rounds}"])
    before = peak_mb()
    started = time.perf_counter()
    grid = InProcessGrid(echo, cfg)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, grid.run.run_id, 0
    run_server(grid, cfg)
    seconds = time.perf_counter() - started
    print("\n1. in-process grid, trivial clients (every client every round, server test included)")
    print(f"{'clients':>8} {'rounds':>6} {'seconds':>8} {'peak RSS growth MB':>19} {'peak RSS MB':>12}")
    print(f"{clients:>8} {rounds:>6} {seconds:>8.2f} {peak_mb() - before:>19.0f} {peak_mb():>12.0f}")


def training(rows: list[str]) -> dict[str, object]:
    """Part 2: the ConvNet's training runs; returns the IID run's config for part 3."""
    print("\n2. ConvNet, bundled MNIST, 100 clients, 10 a round, 20 rounds of 5 local epochs")
    print(f"{'run':>10} {'acc r5':>7} {'acc r10':>7} {'acc r20':>7} {'round >= 80%':>12} {'wall s':>7} "
          f"{'virtual s':>9} {'MB up':>7} {'KB up/client':>12} {'epsilon':>8}")
    for name in rows:
        cfg = with_overrides(Config(), TRAINING + ROWS[name])
        started = time.perf_counter()
        history = run_history(cfg)
        wall = time.perf_counter() - started
        acc = [r.accuracy for r in history.records]
        reach = next((r.round for r in history.records if r.accuracy >= 0.8), None)
        up = sum(r.bytes_up for r in history.records)
        per_client = up / max(1, sum(r.replied for r in history.records)) / 1024
        eps = history.records[-1].epsilon
        print(f"{name:>10} {acc[4]:>7.1%} {acc[9]:>7.1%} {acc[-1]:>7.1%} {str(reach or '-'):>12} {wall:>7.0f} "
              f"{history.records[-1].virtual_seconds:>9.0f} {up / 1e6:>7.1f} {per_client:>12.1f} "
              f"{'-' if eps is None else f'{eps:.3g}':>8}")
        sys.stdout.flush()
    return {}


SMALL_CLIENTS = ["federation.clients=400", "federation.local_epochs=1"]  # 10 images each, one local step


def leakage(seconds: float, rounds: tuple[int, ...] = (1, 5, 20), small: bool = False) -> None:
    """Part 3: the same attacks on one client's reply as the model trains."""
    what = "400 clients of 10 images, 1 local step" if small else "40 images, 13 local steps"
    print(f"\n3. attacks on one client's reply of the IID run ({what}), {seconds:g} s each")
    print(f"{'round':>5} {'client':>6} {'method':>10} {'PSNR dB':>8} {'SSIM':>6} {'labels':>7} {'s':>5}")
    base = with_overrides(Config(), TRAINING + (SMALL_CLIENTS if small else []))
    for server_round in rounds:
        client = server_view(base, server_round).clients[0]
        for method, extra in (("dlg", ["attack.init=class_mean", "attack.iterations=100000"]),
                              ("vae_prior", ["attack.restarts=1"])):
            cfg = with_overrides(base, [f"leak.round={server_round}", f"leak.client={client}",
                                        f"attack.name={method}", f"attack.time_limit={seconds}", *extra])
            setup = prepare(cfg)
            step = None
            for step in make_attack(cfg).steps(setup.leak, setup.attacker_labels):
                pass
            r = finish(setup, step)
            e = r.evaluation
            labels = "-" if e.label_accuracy is None else f"{e.label_accuracy:.0%}"
            print(f"{server_round:>5} {client:>6} {method:>10} {e.psnr:>8.1f} {e.ssim:>6.2f} {labels:>7} {r.seconds:>5.0f}")
            sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 1,2")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"part 2's runs, of {', '.join(ROWS)}")
    parser.add_argument("--attack-seconds", type=float, default=30.0, help="part 3's time budget per attack")
    parser.add_argument("--small-clients", action="store_true", help="part 3 on a run of 400 clients of 10 images, "
                        "one local epoch (one step), where a reply is easier to invert")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    logging.getLogger("flwr").setLevel(logging.ERROR)  # after Flower's import, which sets its own level
    parts = {p.strip() for p in args.parts.split(",")}
    print(f"load average {os.getloadavg()[0]:.1f} (2 cores); torch threads 1")
    if "1" in parts:
        overhead()
    if "2" in parts:
        training([r for r in args.rows.split(",") if r])
    if "3" in parts:
        leakage(args.attack_seconds, small=args.small_clients)
    if "4" in parts:
        from federation_ray import ray_vs_inprocess  # bench/federation_ray.py

        ray_vs_inprocess()
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
