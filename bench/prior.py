"""Benchmark: the VAE image prior against the pixel attacks (DLG, Inverting Gradients) on the same leaks.

    python bench/prior.py                                  # the README's table (about 25 minutes on 2 cores)
    python bench/prior.py --rows lenet:16,convnet:32 --seconds 30 --batches 1
    python bench/prior.py --methods vae_prior --workers 1
    python bench/prior.py --rows convnet2:32 --batches 8 --methods vae_prior,diffusion_prior --per-batch

Every row is one leaked MNIST batch (test digits, FedSGD unless `xK` clients are named) and one
victim; each method attacks the very same leak with the same time budget, one torch thread each,
two jobs side by side on the two cores. A row `lenet:32` is DLG's 13k-parameter sigmoid LeNet at
batch 32; `convnet2:32` the ReLU ConvNet at width 32 (104k parameters); `mlp:32` the 2-layer
perceptron with 256 sigmoid units (270k parameters), whose fully connected first layer confines the
batch to the row space of its gradient (engine/attacks/rowspace.py); `lenet:8x4` is 4 clients of 8
images each, averaged.

Methods: `vae_prior`, `diffusion_prior`, `ig`, `dlg` as the engine runs them, and the control `rowspace`: the row-space
fit (Eq. 3 of rowspace.py) from uniform noise, with the same labels as the prior but no prior at
all, to show what the victim's first layer gives away by itself.

Columns: the gradient entries the server sees against the pixels the attacker must find (a batch
whose gradient has fewer entries than unknown pixels cannot be pinned down by the gradient alone),
mean matched PSNR and SSIM, exact-multiset label accuracy, seconds, and for the prior the share of
reconstructions nearer their own victim than any image of the prior's training sample (plausible
is not leaked). The prior's own limit, its held-out reconstruction PSNR, is printed beside the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROWS = "lenet:8,lenet:16,lenet:32,lenet:64,lenet:8x4,convnet2:16,convnet2:32,convnet2:64"
VICTIMS = {"lenet": ("lenet", 0), "convnet": ("convnet", 0), "convnet2": ("convnet", 32), "mlp": ("mlp", 0)}
PRIOR_METHODS = ("vae_prior", "diffusion_prior")  # the methods scored with the nearest-training-image check


def parse_row(text: str) -> tuple[str, int, int, int]:
    """'convnet2:8x4' -> (model name, width, images per client, clients)."""
    victim, _, size = text.partition(":")
    if victim not in VICTIMS or not size:
        raise SystemExit(f"bad row {text!r}: write victim:batch or victim:batchxclients, victim in {', '.join(VICTIMS)}")
    per_client, _, clients = size.partition("x")
    name, width = VICTIMS[victim]
    return name, width, int(per_client), int(clients or 1)


def one(job: tuple[str, str, int, float, int, tuple[str, ...]]) -> dict:
    """Attack one leak with one method; runs in a worker process (one torch thread)."""
    import torch

    from engine.config import Config, with_overrides
    from engine.experiment import finish, make_attack, prepare, prior_check

    row, method, seed, seconds, restarts, extra = job
    name, width, per_client, clients = parse_row(row)
    torch.set_num_threads(1)
    overrides = [
        f"seed={seed}", f"data.batch_size={per_client}", f"data.clients={clients}", f"model.name={name}",
        f"model.width={width}", f"attack.name={'vae_prior' if method == 'rowspace' else method}", f"attack.time_limit={seconds}", "attack.iterations=100000",
    ]
    if method in PRIOR_METHODS:
        overrides += [f"attack.restarts={restarts}"]
    config = with_overrides(Config(), [*overrides, *extra])
    setup = prepare(config)
    if method == "rowspace":
        step = rowspace_control(config, setup, seconds)
        if step is None:  # no slice to fit in (noise hides it): nothing to score
            nan = float("nan")
            return {"row": row, "method": method, "seed": seed, "observed": setup.leak.observed,
                    "pixels": setup.leak.num_images * setup.images[0].numel(), "images": setup.leak.num_images,
                    "psnr": nan, "ssim": nan,
                    "labels": None, "seconds": nan, "closer": None}
    else:
        step = make_attack(config).run(setup.leak, setup.attacker_labels)
    result = finish(setup, step)
    e = result.evaluation
    record = {
        "row": row, "method": method, "seed": seed, "observed": setup.leak.observed,
        "pixels": setup.leak.num_images * setup.images[0].numel(), "images": setup.leak.num_images,
        "psnr": e.psnr, "ssim": e.ssim, "labels": e.label_accuracy, "seconds": result.seconds, "closer": None,
    }
    if method in PRIOR_METHODS:
        record["closer"] = prior_check(setup, result)["closer_to_victim"]
    return record


def rowspace_control(config, setup, seconds: float):
    """The row-space fit alone: labels as the prior attack reads them, a uniform start, no prior;
    None when the leak shows no clear slice (DP noise, say)."""
    import torch

    from engine.attacks import AttackStep
    from engine.attacks.rowspace import fit_in_rowspace, image_basis
    from engine.experiment import make_attack

    start = time.perf_counter()
    leak = setup.leak
    basis = image_basis(leak)
    if basis is None:
        return None
    labels = make_attack(config).labels(leak).to(basis.device)  # config names vae_prior: the prior's labels
    noise = torch.rand((leak.num_images, *leak.image_shape), generator=torch.Generator().manual_seed(config.seed))
    fit = fit_in_rowspace(leak, labels, noise.to(basis.device), basis, 10**6,
                          out_of_time=lambda: time.perf_counter() - start > seconds)
    while True:
        try:
            next(fit)
        except StopIteration as end:
            loss, images = end.value
            break
    return AttackStep(0, "done", 0, loss, loss, images.clamp(0, 1), labels, time.perf_counter() - start, True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=ROWS, help=f"comma-separated victim:batch[xclients] (default {ROWS})")
    parser.add_argument("--methods", default="vae_prior,ig,dlg")
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget of every attack")
    parser.add_argument("--batches", type=int, default=1, help="leaked batches (seeds) per row")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first batch's seed (e.g. 8: batches nobody tuned a knob on)")
    parser.add_argument("--workers", type=int, default=2, help="attacks side by side (one thread each)")
    parser.add_argument("--restarts", type=int, default=1,
                        help="restarts of the prior attack, sharing its time (2+ gives the posterior spread)")
    parser.add_argument("--per-batch", action="store_true", help="also print each batch's PSNR per method")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config setting for every leak and attack, e.g. defence.dp.noise_multiplier=0.01")
    args = parser.parse_args()

    from engine.priors import load_diffusion, load_prior

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    for row in rows:
        parse_row(row)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if "rowspace" in methods and any(parse_row(row)[0] != "mlp" for row in rows):
        parser.error("the rowspace control needs a fully connected first layer: give it mlp rows only")
    seeds = range(args.first_seed, args.first_seed + args.batches)
    jobs = [(row, method, seed, args.seconds, args.restarts, tuple(args.set))
            for row in rows for seed in seeds for method in methods]
    card = load_prior("mnist").card
    print(f"MNIST prior: held-out reconstruction {card.get('heldout_psnr_db', float('nan')):.1f} dB "
          f"(the best any latent attack can do on average), -ELBO {card.get('heldout_neg_elbo_nats', float('nan')):.1f} nats")
    if "diffusion_prior" in methods:
        card = load_diffusion("mnist").card
        print(f"MNIST diffusion prior: held-out images noised to t=200 and denoised {card.get('heldout_psnr_t200', float('nan')):.1f} dB, "
              f"to t=500 {card.get('heldout_psnr_t500', float('nan')):.1f} dB ({card.get('steps', '?')} training steps)")
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{len(jobs)} attacks of {args.seconds:g} s, {args.workers} at a time" +
          (f", with {' '.join(args.set)}" if args.set else "") + "\n")
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        records = list(pool.map(one, jobs))
    print("| victim:batch | gradient entries | unknown pixels | method | PSNR dB | SSIM | labels | s | nearer victim |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        for method in methods:
            mine = [r for r in records if r["row"] == row and r["method"] == method]
            mean = lambda key: sum(r[key] for r in mine) / len(mine)  # noqa: E731
            labels = [r["labels"] for r in mine if r["labels"] is not None]
            closer = "" if mine[0]["closer"] is None else f"{mean('closer'):.1%}"
            print(f"| {row} | {mine[0]['observed']:,} | {mine[0]['pixels']:,} | {method} | {mean('psnr'):.1f} | "
                  f"{mean('ssim'):.2f} | {sum(labels) / len(labels) if labels else float('nan'):.0%} | "
                  f"{mean('seconds'):.0f} | {closer} |")
    if args.per_batch:
        print(f"\n| victim:batch | method | PSNR dB of each batch (seed {seeds[0]}, {seeds[0] + 1}, ...) |")
        print("|---|---|---|")
        for row in rows:
            for method in methods:
                mine = sorted((r for r in records if r["row"] == row and r["method"] == method), key=lambda r: r["seed"])
                print(f"| {row} | {method} | {' '.join(format(r['psnr'], '.1f') for r in mine)} |")
                if method in PRIOR_METHODS:  # how many of each batch's images are nearer their victim
                    near = " ".join(f"{round(r['closer'] * r['images'])}/{r['images']}" for r in mine)
                    print(f"| {row} | {method}: nearer their victim | {near} |")
    print(f"\n{time.perf_counter() - start:.0f} s in all; load average at the end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
