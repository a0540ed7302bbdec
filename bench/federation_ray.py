"""Benchmark part 4: Flower's Simulation Runtime (Ray) against the lab's in-process grid.

    python bench/federation.py --parts 4                 # as a part of the federation bench
    python bench/federation_ray.py                       # alone (needs pip install -r requirements-ray.txt)
    python bench/federation_ray.py --workloads echo --clients 1000 --rounds 3

The same 1000 clients x 3 rounds, every client sampled every round, the server's central test each
round, run once on each backend, each in a fresh Python process so that neither pays for the other's
imports. Two workloads:

- echo: part 1's trivial ClientApp (sends back the weights it got; the MLP of width 8): the runtime's
  own overhead per message;
- lab: the lab's ClientApp (LeNet, one local epoch over its share, 4 images a client): the real App.

Wall seconds of the run (after the imports; Ray's start-up included), and the peak resident memory
of the whole process tree (the Python process and, under Ray, its GCS, raylet and worker processes),
sampled every 0.1 s from /proc: the sum of each process's RSS, so pages they share count once per
process. Same seed, same accuracies: the last column shows both backends' final test accuracy.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")
WORKLOADS = {
    "echo": ["model.name=mlp", "model.width=8"],
    "lab": ["model.name=lenet", "federation.local_epochs=1", "federation.batch_size=16"],
}


# -- the parent: one child process per backend, its process tree's memory sampled -------------------


def _tree_rss(root: int) -> tuple[int, int]:
    """(bytes, processes): the summed RSS of `root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    total, count, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            count += 1
        except OSError:
            pass
        todo.extend(children.get(pid, ()))
    return total, count


def measure(backend: str, workload: str, clients: int, rounds: int) -> dict:
    """Run one backend in a child process; its result with the tree's peak RSS and process count."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", backend, "--workloads", workload,
               "--clients", str(clients), "--rounds", str(rounds)]
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak, most = [0], [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss, count = _tree_rss(child.pid)
            peak[0], most[0] = max(peak[0], rss), max(most[0], count)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = child.communicate()
    done.set()
    sampler.join()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        return {"backend": backend, "workload": workload, "error": f"exit {child.returncode}"}
    result = json.loads(lines[-1])
    result.update(backend=backend, workload=workload, wall=time.perf_counter() - started,
                  peak_mb=peak[0] / 2**20, processes=most[0])
    return result


def ray_vs_inprocess(workloads: tuple[str, ...] = ("echo", "lab"), clients: int = 1000, rounds: int = 3) -> list[dict]:
    """Part 4: print the table; returns its rows."""
    try:
        import ray  # noqa: F401
    except ImportError:
        print("\n4. Ray: not installed (pip install -r requirements-ray.txt); skipped")
        return []
    print(f"\n4. Flower's Simulation Runtime (Ray) against the in-process grid: {clients} clients x {rounds} rounds, "
          "every client every round")
    print(f"{'workload':>8} {'backend':>9} {'run s':>7} {'process s':>9} {'peak tree RSS MB':>16} "
          f"{'processes':>9} {'before run MB':>13} {'accuracy':>8}")
    rows = []
    for workload in workloads:
        for backend in ("inprocess", "ray"):
            r = measure(backend, workload, clients, rounds)
            rows.append(r)
            if "error" in r:
                print(f"{workload:>8} {backend:>9} failed: {r['error']}")
            else:
                print(f"{workload:>8} {backend:>9} {r['seconds']:>7.1f} {r['wall']:>9.1f} {r['peak_mb']:>16.0f} "
                      f"{r['processes']:>9} {r['baseline_mb']:>13.0f} {r['accuracy']:>8.3f}")
            sys.stdout.flush()
    return rows


# -- the child: one run on one backend ----------------------------------------------------------------


def _child(backend: str, workload: str, clients: int, rounds: int) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    from flwr.app import Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp
    from flwr.supercore.task_identity import TaskIdentity

    from engine.config import Config, with_overrides
    from engine.federation.client_app import app as lab_app
    from engine.federation.grid import InProcessGrid
    from engine.federation.server_app import run_server
    from engine.federation.simulate import RAY_BACKEND_CONFIG, ray_client_app

    torch.set_num_threads(1)
    logging.getLogger("flwr").setLevel(logging.ERROR)
    config = with_overrides(Config(), WORKLOADS[workload] + [
        f"federation.clients={clients}", "federation.fraction=1.0", f"federation.rounds={rounds}",
        "federation.deadline=1000000"])
    echo = ClientApp()

    @echo.train()
    def train(msg: Message, context: Context) -> Message:
        metrics = MetricRecord({"num-examples": 1, "partition-id": int(context.node_config["partition-id"])})
        return Message(content=RecordDict({"arrays": msg.content["arrays"], "metrics": metrics}), reply_to=msg)

    client = echo if workload == "echo" else lab_app
    accuracy: list[float] = []

    def report(server_round, loss, acc, outcome) -> None:
        accuracy.append(acc)

    before = int(Path("/proc/self/statm").read_text().split()[1]) * PAGE / 2**20
    started = time.perf_counter()
    if backend == "inprocess":
        grid = InProcessGrid(client, config)
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, grid.run.run_id, 0
        run_server(grid, config, report)
    else:
        from flwr.simulation import run_simulation

        server = ServerApp()

        @server.main()
        def main(grid, context) -> None:
            run_server(grid, config, report)

        run_simulation(server_app=server, client_app=ray_client_app(config, client), num_supernodes=clients,
                       backend_config=copy.deepcopy(RAY_BACKEND_CONFIG))
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "accuracy": accuracy[-1], "rounds": len(accuracy) - 1,
                      "baseline_mb": before}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default="echo,lab", help="of echo, lab")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=("inprocess", "ray"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.workloads, args.clients, args.rounds)
        return
    print(f"load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores); torch threads 1 (each Ray worker too)")
    ray_vs_inprocess(tuple(w for w in args.workloads.split(",") if w), args.clients, args.rounds)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
