"""Benchmark: what secure aggregation costs per round, and what noise costs the attack and the model.

    python bench/defences.py                        # 10 and 100 clients, and the noise sweep (a few minutes)
    python bench/defences.py --with-500             # adds 500 clients (about half a minute more)
    python bench/defences.py --with-500 --skip-sweeps   # secure aggregation alone: 10, 100, 500 clients
    python bench/defences.py --clients 10 --values 0,1e-1

Secure aggregation (Bonawitz et al. 2017, in process): each client's input is the gradient of
DLG's LeNet (one bundled MNIST digit each), threshold t = floor(n / 2) + 1, and 10% of the clients
drop out, half after sharing their keys (their pairwise masks are rebuilt from shares) and half
after sending their masked input (their self-masks still come off). Prints the round's wall time,
the bytes a surviving client sent against plain FedAvg's 4 bytes per entry, and the largest
difference between the unmasked sum and the plain sum.

Sweeps, each through `engine.sweep`: defence.dp.noise_multiplier (example level, C = 1
and 10), the compression method, DLG's pruning fraction, and cohorts (images per client, clients per
round). Each row: DLG's PSNR (300 iterations, default seed), the epsilon of that one round at delta
1e-5, the compression ratio, and for DP and compression the test accuracy of a FedAvg training run
(5 clients, 10 rounds of 5 local steps) under the same defence, with the epsilon that run spent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import Config, with_overrides  # noqa: E402
from engine.data import load_dataset, to_model_input  # noqa: E402
from engine.defences.secure_aggregation import flatten, secure_sum  # noqa: E402
from engine.sweep import sweep_points  # noqa: E402
from engine.utility import Training  # noqa: E402
from engine.leakage import batch_gradient, model_parameters  # noqa: E402
from engine.models import create_model  # noqa: E402


def client_vectors(count: int) -> list[torch.Tensor]:
    """One flat LeNet gradient per client, each of one bundled test digit (cycling through them)."""
    data = load_dataset("mnist", "test")
    model = create_model("lenet", seed=0)
    params = model_parameters(model)
    images = to_model_input(data.images, 1, 28)
    return [flatten(batch_gradient(model, params, images[i % len(data) : i % len(data) + 1],
                                   data.labels[i % len(data) : i % len(data) + 1])) for i in range(count)]


def secure_round(count: int, dropout: float = 0.1) -> None:
    """Time one round with `dropout` of the clients lost and print one table row."""
    vectors = client_vectors(count)
    lost = round(dropout * count)
    before_input, before_unmask = set(range(lost // 2)), set(range(lost // 2, lost))
    threshold = count // 2 + 1
    start = time.perf_counter()
    result = secure_sum(vectors, threshold, before_input, before_unmask)
    seconds = time.perf_counter() - start
    plain = torch.stack([vectors[u] for u in result.survivors]).sum(0)
    error = float((result.total - plain).abs().max())
    print(f"{count:>7} {threshold:>4} {lost:>7} {seconds:>9.2f} {result.bytes_per_client:>12,.0f} "
          f"{result.plain_bytes:>12,} {result.bytes_per_client / result.plain_bytes:>6.2f}x {error:>10.1e}")


def table(title: str, overrides: list[str], param: str, values: list[str], train: bool = True) -> None:
    """One sweep as a table: DLG's PSNR, the round's epsilon and compression ratio, FedAvg's test accuracy."""
    config = with_overrides(Config(), ["attack.iterations=300", *overrides])
    print(f"\n{title}")
    print(f"{param.split('.')[-1]:>16} {'PSNR dB':>8} {'epsilon':>9} {'ratio':>6} {'accuracy':>9} {'train eps':>10}")
    for p in sweep_points(config, param, values, Training() if train else None):
        eps = "-" if p.epsilon is None else f"{p.epsilon:.3g}"
        ratio = "-" if p.compression_ratio is None else f"{p.compression_ratio:.1f}"
        acc = "-" if p.accuracy is None else f"{p.accuracy:.1%}"
        train_eps = "-" if p.training_epsilon is None else f"{p.training_epsilon:.3g}"
        print(f"{p.value:>16} {p.psnr:>8.1f} {eps:>9} {ratio:>6} {acc:>9} {train_eps:>10}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="10,100", help="client counts for secure aggregation (default 10,100)")
    parser.add_argument("--with-500", action="store_true", help="also time 500 clients (about 30 s)")
    parser.add_argument("--values", default="0,1e-3,1e-2,1e-1,1", help="noise multipliers for the sweep")
    parser.add_argument("--clips", default="1,10", help="clipping norms C, one sweep each (default 1,10)")
    parser.add_argument("--skip-sweeps", action="store_true", help="secure aggregation only: leave out every sweep")
    parser.add_argument("--skip-compression", action="store_true", help="leave out the compression tables")
    parser.add_argument("--skip-cohorts", action="store_true", help="leave out the cohort tables")
    args = parser.parse_args()
    torch.set_num_threads(1)
    counts = [int(c) for c in args.clients.split(",") if c] + ([500] if args.with_500 else [])
    print(f"secure aggregation, 10% dropout, {len(client_vectors(1)[0]):,} entries per client (LeNet gradient)")
    print(f"{'clients':>7} {'t':>4} {'dropped':>7} {'seconds':>9} {'bytes/client':>12} {'plain bytes':>12} "
          f"{'ratio':>7} {'max error':>10}")
    for count in counts:
        secure_round(count)
    if args.skip_sweeps:
        return
    noise = [v for v in args.values.split(",") if v]
    for clip in (c for c in args.clips.split(",") if c):
        table(f"example-level DP, clip C = {clip}", [f"defence.dp.clip={clip}"], "defence.dp.noise_multiplier", noise)
    if not args.skip_compression:
        table("compression (top_k keeps 10%, prune zeroes 10%, quantise 4 bits)", [], "defence.compression.method",
              ["none", "top_k", "quantise", "sign", "prune"])
        table("DLG's gradient pruning", ["defence.compression.method=prune"], "defence.compression.fraction",
              ["0.1", "0.3", "0.5", "0.7", "0.9"], train=False)
    if not args.skip_cohorts:
        table("cohorts: images per client (one client)", [], "data.batch_size", ["1", "2", "4", "8"], train=False)
        table("cohorts: clients of one image each", [], "data.clients", ["1", "2", "4", "8"], train=False)


if __name__ == "__main__":
    main()
