"""Benchmark: the plain DLG loop against the engine's DLG, and label recovery, on bundled MNIST.

    python bench/dlg_speed.py                       # the issue's full run (about an hour on 2 cores)
    python bench/dlg_speed.py --sizes 1,8 --batches 10 --label-batches 0

For each batch size, the same seeded batches of bundled MNIST test digits leak a FedSGD gradient
from a seeded DLG LeNet; both attacks run until 30 dB mean matched PSNR or their time budget.
Prints seconds to 30 dB, final PSNR and the speed-up. On batches the engine runs twice: from grey
dummies (DLG's story: noise turns into the images) and, as the stronger attacker who holds labelled
auxiliary digits, from the mean auxiliary digit of each recovered label (`attack.init=class_mean`). Label recovery: how often the exact label
multiset comes back, with random probes and with the attacker's labelled auxiliary images (the
first `--auxiliary` bundled train digits, none of them a victim), by the count fit alone and by the
engine's candidate probe.
Time spent scoring progress is excluded from the attack times (the engine's own clock stops while
a caller holds a step; the plain loop's scoring time is subtracted).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine.attacks import create_attack  # noqa: E402
from engine.data import load_dataset, select_batch  # noqa: E402
from engine.labels import recover_labels  # noqa: E402
from engine.leakage import leak_update  # noqa: E402
from engine.metrics import match, psnr  # noqa: E402
from engine.models import create_model  # noqa: E402
from reference_dlg import plain_dlg  # noqa: E402

TARGET_DB = 30.0


def matched_psnr(images: torch.Tensor, originals: torch.Tensor) -> float:
    images = images.detach().clamp(0, 1)
    return float(psnr(images[match(images, originals)], originals).mean())


def time_to_target(
    stream, originals: torch.Tensor, budget: float, check_every: int, counts_scoring: bool
) -> tuple[float | None, float, float]:
    """Drive `stream` of (attack seconds, images); returns (seconds to 30 dB or None, final PSNR,
    seconds used). When the stream's clock `counts_scoring` (the plain loop's does; the engine's
    stops while its caller holds a step), the time spent scoring is subtracted."""
    scoring, count, value, used = 0.0, 0, 0.0, 0.0
    for seconds, images in stream:
        used = seconds - scoring if counts_scoring else seconds
        count += 1
        if count % check_every == 0 or used > budget:
            tick = time.perf_counter()
            value = matched_psnr(images, originals)
            scoring += time.perf_counter() - tick
            if value >= TARGET_DB:
                return used, value, used
        if used > budget:
            break
    return None, value, used


def engine_stream(leak, budget: float, auxiliary, init: str = "grey"):
    attack = create_attack("dlg", iterations=10**9, time_limit=budget, auxiliary=auxiliary, init=init)
    for step in attack.steps(leak):
        if step.stage in ("update", "done"):
            yield step.seconds, step.images


def run_size(dataset, auxiliary, size: int, batches: int, budgets: tuple[float, float]) -> list[dict]:
    rows = []
    for seed in range(batches):
        batch = select_batch(dataset, size, seed=seed)
        model = create_model("lenet", seed=seed)
        leak = leak_update(model, [(batch.images, batch.labels)])
        leaked = [leak.update[name] for name, _ in model.named_parameters()]
        reference = plain_dlg(model, leaked, size, leak.image_shape, seed=seed)
        ref = time_to_target(reference, batch.images, budgets[0], check_every=1, counts_scoring=True)
        reference.close()
        check = 10 if size == 1 else 25
        ours = time_to_target(engine_stream(leak, budgets[1], auxiliary), batch.images, budgets[1], check, False)
        row = {"seed": seed, "ref": ref, "ours": ours}
        line = f"  B={size:2d} batch {seed}: plain {fmt(ref)} | engine {fmt(ours)}"
        if auxiliary is not None and size > 1:  # the stronger attacker: dummies start at its class means
            stream = engine_stream(leak, budgets[1], auxiliary, "class_mean")
            row["mean"] = time_to_target(stream, batch.images, budgets[1], check, False)
            line += f" | class-mean start {fmt(row['mean'])}"
        rows.append(row)
        print(line, flush=True)
    return rows


def fmt(result) -> str:
    hit, final, used = result
    return f"{'—' if hit is None else f'{hit:6.2f} s'} to 30 dB, final {final:5.1f} dB ({used:.1f} s)"


def summarise(size: int, rows: list[dict], budgets: tuple[float, float]) -> str:
    def part(key: str) -> tuple[str, str, str, list[float]]:
        hits = [r[key][0] for r in rows if r[key][0] is not None]
        finals = [r[key][1] for r in rows]
        median = f"{statistics.median(hits):.2f}" if hits else "—"
        return f"{len(hits)}/{len(rows)}", median, f"{statistics.mean(finals):.1f}", hits

    ref, ours = part("ref"), part("ours")
    ratios = [r["ref"][0] / r["ours"][0] for r in rows if r["ref"][0] and r["ours"][0]]
    speedup = f"{statistics.median(ratios):.1f}x" if ratios else "n/a (plain loop never reached 30 dB)"
    mean = part("mean") if all("mean" in r for r in rows) else ("—", "—", "—", [])
    slowest = f"{max(ours[3]):.2f}" if ours[3] else "—"
    return (
        f"| {size:2d} | {ref[0]} in {budgets[0]:g} s | {ref[1]} | {ref[2]} | {ours[0]} in {budgets[1]:g} s "
        f"| {ours[1]} | {ours[2]} | {slowest} | {speedup} "
        f"| {mean[0]} | {mean[1]} | {mean[2]} |"
    )


def label_recovery(dataset, auxiliary, size: int, batches: int) -> str:
    """Exact multisets out of `batches`: without and with the attacker's labelled auxiliary images,
    the count fit alone and the engine's attack (candidates, each probed for 100 evaluations)."""
    hits = [0, 0, 0, 0]
    for seed in range(batches):
        batch = select_batch(dataset, size, seed=1000 + seed)
        leak = leak_update(create_model("lenet", seed=1000 + seed), [(batch.images, batch.labels)])
        truth = batch.labels.sort().values
        for column, extra in enumerate((None, auxiliary)):
            hits[2 * column] += bool((recover_labels(leak, auxiliary=extra) == truth).all())
            step = create_attack("dlg", iterations=100, auxiliary=extra).run(leak)  # best candidate after the probe
            hits[2 * column + 1] += bool((step.labels.sort().values == truth).all())
    return f"| {size:2d} | {batches} | " + " | ".join(f"{100 * h / batches:.0f}%" for h in hits) + " |"


def cifar_timing(device: str, evaluations: int = 20) -> str:
    """Seconds per gradient evaluation for 64 CIFAR-size images (3x32x32) on the LeNet."""
    images = torch.rand(64, 3, 32, 32, device=device)
    labels = torch.arange(64, device=device) % 10
    leak = leak_update(create_model("lenet", channels=3, size=32, seed=0, device=device), [(images, labels)])
    attack = create_attack("dlg", iterations=evaluations, labels="true", sigmoid_steps=0)
    step = attack.run(leak, labels)
    if device == "cuda":
        torch.cuda.synchronize()
    return f"{device}: {1000 * step.seconds / max(step.iteration, 1):.1f} ms per evaluation (64 x 3x32x32, LeNet)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,4,8,16")
    parser.add_argument("--batches", type=int, default=10, help="seeded batches per size")
    parser.add_argument("--label-batches", type=int, default=100, help="batches per size for label recovery")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one measured steadier here)")
    parser.add_argument("--auxiliary", type=int, default=1000,
                        help="labelled train images the attacker holds to read the labels (the CLI's attack.auxiliary)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_dataset("mnist")
    train = load_dataset("mnist", "train")
    auxiliary = (train.images[: args.auxiliary], train.labels[: args.auxiliary]) if args.auxiliary else None
    budgets = {1: (10.0, 0.5), 4: (20.0, 20.0), 8: (20.0, 20.0), 16: (60.0, 60.0)}
    lines = [
        "| B | plain: ≥30 dB | plain: median s | plain: mean final dB | engine: ≥30 dB | engine: median s "
        "| engine: mean final dB | engine: slowest hit s | speed-up (median) "
        "| class-mean start: ≥30 dB | class-mean start: median s | class-mean start: mean final dB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in [int(s) for s in args.sizes.split(",") if s]:
        print(f"batch size {size}:", flush=True)
        rows = run_size(dataset, auxiliary, size, args.batches, budgets.get(size, (60.0, 60.0)))
        lines.append(summarise(size, rows, budgets.get(size, (60.0, 60.0))))
    print(f"\nDLG on bundled MNIST, LeNet (sigmoid), FedSGD, {args.batches} seeded batches per size, "
          f"{args.threads} thread(s), {torch.get_num_threads()} torch thread(s):")
    print("\n".join(lines))
    if args.label_batches:
        print("\nLabel recovery, exact multiset (untrained LeNet, bundled MNIST):")
        print(f"| B | batches | random probes: count estimate | random probes: engine (+ 100-evaluation probe) "
              f"| {args.auxiliary} auxiliary: count fit | {args.auxiliary} auxiliary: engine |\n|---|---|---|---|---|---|")
        for size in (8, 16):
            print(label_recovery(dataset, auxiliary, size, args.label_batches), flush=True)
    print("\nPer-evaluation timing, batch of 64 CIFAR-size images:")
    print(cifar_timing("cpu"))
    print(cifar_timing("cuda") if torch.cuda.is_available() else "cuda: not available on this machine")


if __name__ == "__main__":
    main()
