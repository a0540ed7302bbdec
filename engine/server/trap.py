"""Trap weights (Boenisch, Dziedzic, Schuster, Shamsabadi, Shumailov & Papernot, "When the Curious
Abandon Honesty: Federated Learning Is Not Private", EuroS&P 2023, Sec. 4).

    model = trap_model(victim, (1, 28, 28), rows=1024, scale=1.1)
    readout = read_trap(leak)

The server draws each row of the front layer (front.py, Eq. 1) at random, makes a random half of
its entries negative, and multiplies those by a scale s a little above 1, with no bias:

    W_ij = |z_ij| if j in P_i,  -s |z_ij| otherwise,  z_ij ~ N(0, 1),  |P_i| = N/2   # Eq. (8)

Images are non-negative, so for s > 1 most images push most rows below zero and each row is switched
on by few images. A row that exactly one image switched on gives it back by Eq. (3),
x = dL/dW_i / dL/db_i. The server cannot see which rows those are; an image alone in several rows
comes back identically from each, while a mixture differs from row to row (its images' weights
dL/dh_i depend on the row's column of the second layer), so candidates that repeat come first; then
those whose pixels sit on the 8-bit grid k/255 that stored images use (a mixture's do not) and
inside [0, 1]. The scale decides everything: too low and rows fire for many images, too high and for
none, and where that lies depends on the data (sparse digits take s = 1.5, bright faces about 1.05).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..leakage import Leak
from .front import PARAMETER_BUDGET, FrontLayer, MaliciousModel, ServerPlan, inserted_parameters
from .imprint import Readout, read_rows

__all__ = ["trap_model", "read_trap", "trap_rows"]

SAME = 1e-6  # mean squared difference under which two candidates are the same image
CANDIDATES = 4096  # rows compared pairwise at most (the strongest): the (R, R) distances stay in memory
LEVELS = 255  # images are stored in 8 bits: a real one's pixels sit on the grid k / 255, a mixture's do not


def trap_rows(rows: int, n: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Eq. (8): (rows, n) weights, half of each row negative and scaled by `scale`."""
    z = torch.randn(rows, n, generator=generator).abs()
    negative = torch.rand(rows, n, generator=generator).argsort(dim=1) < n // 2  # a random half per row
    return torch.where(negative, -scale * z, z) / math.sqrt(n)  # Eq. (8)


def trap_model(
    victim: nn.Module, image_shape: tuple[int, int, int], rows: int = 1024, scale: float = 1.1, seed: int = 0,
    batch: int = 1,
) -> MaliciousModel:
    """The victim with a trap layer of `rows` rows in front (Eq. 8); the second layer is random."""
    if not scale > 0:
        raise ValueError(f"the trap scale must be > 0, got {scale}")
    if rows < batch:
        raise ValueError(f"{rows} trap rows cannot catch {batch} images: use at least as many rows as images")
    size = inserted_parameters(rows, image_shape)
    if size > PARAMETER_BUDGET:
        raise ValueError(f"{rows} rows need {size:,} parameters, over the layer budget of {PARAMETER_BUDGET:,}")
    device = next(victim.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    front = FrontLayer(tuple(image_shape), rows)
    with torch.no_grad():
        front.rows.weight.copy_(trap_rows(rows, math.prod(image_shape), scale, generator))
        front.rows.bias.zero_()
        front.back.weight.copy_(torch.randn(math.prod(image_shape), rows, generator=generator) / math.sqrt(rows))
        front.back.bias.fill_(0.5)
    plan = ServerPlan("trap", torch.arange(rows), torch.ones(rows))
    return MaliciousModel(front.to(device), victim, plan)


def read_trap(leak: Leak) -> Readout:
    """Eq. (3) on every row with a signal, then at most B distinct candidates: those that several
    rows agree on first, then those nearest to a valid image (pixels in [0, 1])."""
    model = leak.model
    if not isinstance(model, MaliciousModel) or model.plan.kind != "trap":
        raise ValueError("the trap attack reads a trap-weight model's update: set leak.server=trap")
    images, rows, strength = read_rows(leak.update["front.rows.weight"], leak.update["front.rows.bias"], leak.image_shape)
    images, rows, strength = images[:CANDIDATES], rows[:CANDIDATES], strength[:CANDIDATES]  # strongest first
    flat = images.flatten(1)  # (R, N)
    violation = (flat.clamp(max=0).abs() + (flat - 1).clamp(min=0)).mean(1)  # (R,) 0 for a valid image
    off_grid = ((flat * LEVELS) - (flat * LEVELS).round()).abs().mean(1) / LEVELS  # (R,) 0 for 8-bit pixels
    same = torch.cdist(flat, flat).pow(2) / flat.shape[1] < SAME  # (R, R)
    repeated = same.sum(1) > 1  # (R,)
    order = sorted(range(len(rows)), key=lambda r: (not bool(repeated[r]), float(violation[r] + off_grid[r])))
    kept: list[int] = []
    for r in order:
        if len(kept) == leak.num_images:
            break
        if not any(bool(same[r, q]) for q in kept):
            kept.append(r)
    chosen = torch.tensor(kept, dtype=torch.long)
    return Readout(images[chosen].clamp(0, 1), rows[chosen], strength[chosen], model.plan.bins)
