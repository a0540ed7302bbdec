"""Imprint (Fowl, Geiping, Czaja, Goldblum & Goldstein, "Robbing the Fed: Directly Obtaining
Private Data in Federated Learning with Modified Models", ICLR 2022).

    model = imprint_model(victim, public_images, bins=1024)   # the server's shipped model
    readout = read_imprint(leak)                             # the images back, no optimisation

Every row of the front layer (front.py, Eq. 1) measures the same thing, here the mean brightness
m(x) = <w, x> with w = 1/N, and row i's bias sits at the measurement's i/k quantile t_i over the
attacker's public images, so each of the k bins [t_i, t_{i+1}) is about equally likely:

    W_i = w,  b_i = -t_i,   t_0 < t_1 < ... < t_{k-1}                          # Eq. (4)
    h_i(x) = ReLU(m(x) - t_i)  is on for every image with m(x) > t_i

The second layer sends all k activations through the same column (V_i = v), so dL/dh_i = <v, dL/dx'>
is one number g_j per image j, the same for every row it switches on. Row i's gradient is then the
sum over the images brighter than t_i, and neighbouring rows differ by the images in one bin:

    dL/dW_i - dL/dW_{i+1} = sum_{j: t_i <= m(x_j) < t_{i+1}} g_j x_j            # Eq. (5)
    dL/db_i - dL/db_{i+1} = sum_{j in the same bin} g_j                        # Eq. (6)

An image alone in its bin comes back exactly as the ratio of the two (Sec. 3.1). A client's
weighting n_k / n and the sum over clients multiply both alike, so secure aggregation, which hands
the server the same sum, does not change the ratio. With B images spread over k equally likely
bins, an image is alone with probability (1 - 1/k)^(B - 1), so the expected number of exact images is

    E[exact] = B (1 - 1/k)^(B - 1)                                              # Eq. (7)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..leakage import Leak
from .front import PARAMETER_BUDGET, FrontLayer, MaliciousModel, ServerPlan, inserted_parameters

__all__ = ["brightness", "bin_edges", "imprint_model", "read_imprint", "read_rows", "expected_exact", "Readout"]

PROBE = 64  # public images the server runs through its model to choose the gain
EMPTY = 1e-4  # a bin difference below this share of the largest is float rounding (1e-5 at most), not an image
SIGNAL = 16.0  # the largest |g_j| over the probe after scaling: far from the secure sum's overflow (2^7 at 24 bits)


def expected_exact(batch: int, bins: int) -> float:
    """Eq. (7): images expected alone in one of `bins` equally likely bins, out of `batch`."""
    return batch * (1 - 1 / bins) ** (batch - 1)


def brightness(image_shape: tuple[int, int, int]) -> torch.Tensor:
    """The measurement w of Eq. (4): the mean of the N numbers of an image, (N,)."""
    n = math.prod(image_shape)
    return torch.full((n,), 1.0 / n)


def bin_edges(public: torch.Tensor, bins: int) -> torch.Tensor:
    """t_0 .. t_{k-1} of Eq. (4) from the attacker's public images (M, C, H, W): the i/k quantiles of
    their mean brightness, smoothed. The empirical quantiles of M images cannot resolve more than
    about M bins (two victims between the same two public images share a bin far more often than
    1/k), so the measurement's distribution is estimated with a Gaussian kernel density of
    Silverman's bandwidth h = 1.06 sigma M^(-1/5), and its CDF inverted at the levels i/k:

        F(t) = (1/M) sum_j Phi((t - m_j) / h),   t_i = F^{-1}(i / k)                # Eq. (4b)

    t_0 lies below every image so that the first bin has no lower end."""
    m = public.flatten(1).double().mean(1)  # (M,)
    h = max(1.06 * float(m.std()) * len(m) ** -0.2, 1e-6)
    grid = torch.linspace(float(m.min()) - 4 * h, float(m.max()) + 4 * h, 1001, dtype=torch.float64)  # (G,): steps of about h / 20
    cdf = torch.special.ndtr((grid[:, None] - m[None, :]) / h).mean(1)  # Eq. (4b), (G,)
    levels = torch.arange(1, bins, dtype=torch.float64) / bins
    inner = _interpolate(levels, cdf, grid)  # (k - 1,)
    return torch.cat([torch.tensor([-1.0], dtype=torch.float64), inner]).float()  # (k,)


def _interpolate(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of (xp, fp) at x, xp rising (numpy's interp)."""
    i = torch.searchsorted(xp, x).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    return f0 + (f1 - f0) * (x - x0) / (x1 - x0).clamp_min(1e-300)


def _check(victim: nn.Module, public: torch.Tensor, rows: int, batch: int) -> None:
    """One clear ValueError for a layer that cannot work or cannot be built."""
    try:
        with torch.no_grad():
            victim(public[:1].to(next(victim.parameters()).device))
    except (RuntimeError, IndexError):
        raise ValueError(f"the measurement needs public images of the model's input shape, got {tuple(public.shape)}") from None
    victim_shape = tuple(public.shape[1:])
    if len(public) < 2:
        raise ValueError(f"the bins' quantiles need at least 2 public images, got {len(public)}")
    if rows < batch:
        raise ValueError(f"{rows} bins cannot hold {batch} images apart: use at least as many bins as images")
    size = inserted_parameters(rows, victim_shape)
    if size > PARAMETER_BUDGET:
        raise ValueError(
            f"{rows} bins over images of {math.prod(victim_shape)} numbers need {size:,} parameters, over the "
            f"layer budget of {PARAMETER_BUDGET:,}; use fewer bins"
        )


def per_image_signal(model: MaliciousModel, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """g_j = dL_j/dh for a row every image switches on (row 0 of an imprint): (B,)."""
    h = torch.relu(model.front.rows(images.flatten(1)))  # (B, k)
    h = h.detach().requires_grad_()
    logits = model.victim(model.front.back(h).view(-1, *model.front.image_shape))
    loss = nn.functional.cross_entropy(logits, labels, reduction="sum")
    return torch.autograd.grad(loss, h)[0][:, 0]  # (B,)


def gain(model: MaliciousModel, public: torch.Tensor, seed: int = 0) -> float:
    """The largest |g_j| over a few public images (with labels drawn at random: the server has
    none). The rows and biases are then scaled by SIGNAL / gain and the second layer by its inverse,
    so that x' stays the same and the largest row gradient is about SIGNAL: large enough to keep its
    digits through secure aggregation's fixed point (steps of 2^-24), far enough below its overflow
    (2^7 at 24 fractional bits)."""
    probe = public[:PROBE]
    classes = int(model.victim(model.front(probe[:1])).shape[1])
    labels = torch.randint(classes, (len(probe),), generator=torch.Generator().manual_seed(seed)).to(probe.device)
    return float(per_image_signal(model, probe, labels).abs().max().clamp_min(1e-12))


def imprint_model(
    victim: nn.Module,
    public: torch.Tensor,  # (M, C, H, W) the attacker's own images, never a victim's
    bins: int = 1024,
    batch: int = 1,  # images the round will hold, to refuse fewer bins than images
) -> MaliciousModel:
    """The victim with an imprint layer of `bins` rows in front: Eq. (4) for the rows, one shared
    column for the second layer, scaled so that the victim sees x' = mean_i h_i (a grey image)."""
    if public.dim() != 4:
        raise ValueError(f"the measurement needs public images (M, C, H, W), got shape {tuple(public.shape)}")
    shape = tuple(public.shape[1:])
    _check(victim, public, bins, batch)
    device = next(victim.parameters()).device
    public = public.to(device)
    front = FrontLayer(shape, bins).to(device)
    edges = bin_edges(public.cpu(), bins).to(device)
    model = MaliciousModel(front, victim, ServerPlan("imprint", torch.arange(bins), torch.ones(bins), edges))
    for a in (1.0, None):  # set the layer at gain 1, measure the gain, set it again
        a = SIGNAL / gain(model, public) if a is None else a
        with torch.no_grad():
            front.rows.weight.copy_(brightness(shape).to(device).expand(bins, -1) / a)  # Eq. (4), scaled by 1/a
            front.rows.bias.copy_(-edges / a)
            front.back.weight.fill_(a / bins)  # V_i = v for every row i: one g_j per image
            front.back.bias.zero_()
    return model


@dataclass(frozen=True, eq=False)
class Readout:
    """The images a server reads off its front layer's update, strongest signal first."""

    images: torch.Tensor  # (R, C, H, W) one per row (or bin) that held an image, clamped to [0, 1]
    rows: torch.Tensor  # (R,) long: the row (imprint: the bin) each image came from
    strength: torch.Tensor  # (R,) |dL/db| of that row or bin difference: how much signal it carried
    bins: int  # rows (bins) the layer has

    def __len__(self) -> int:
        return len(self.rows)


def read_rows(
    weight_grad: torch.Tensor, bias_grad: torch.Tensor, image_shape: tuple[int, ...], floor: float = 1e-6
) -> tuple:
    """Eq. (3) row by row: x = dL/dW_i / dL/db_i for every row whose bias gradient is above `floor`
    times the largest (below it: rounding, not an image). Returns (images (R, C, H, W), rows (R,),
    strength (R,))."""
    strength = bias_grad.abs()  # (k,)
    floor = floor * float(strength.max()) if strength.numel() else 0.0
    rows = torch.nonzero(strength > floor).flatten()
    images = weight_grad[rows] / bias_grad[rows, None]  # (R, N)
    order = torch.argsort(strength[rows], descending=True)
    rows = rows[order]
    return images[order].view(-1, *image_shape), rows, strength[rows]


def read_imprint(leak: Leak) -> Readout:
    """Eq. (5) / Eq. (6) on the leaked update of an imprinted model: one image per non-empty bin."""
    model = leak.model
    if not isinstance(model, MaliciousModel) or model.plan.kind != "imprint":
        raise ValueError("the imprint attack reads an imprinted model's update: set leak.server=imprint")
    plan = model.plan
    scale = plan.scales.to(leak.update["front.rows.bias"].device)
    g_w = leak.update["front.rows.weight"][plan.order] * scale[:, None]  # (k, N), rows by rising threshold
    g_b = leak.update["front.rows.bias"][plan.order] * scale  # (k,)
    d_w = g_w - torch.cat([g_w[1:], torch.zeros_like(g_w[:1])])  # Eq. (5)
    d_b = g_b - torch.cat([g_b[1:], torch.zeros_like(g_b[:1])])  # Eq. (6)
    images, bins, strength = read_rows(d_w, d_b, leak.image_shape, floor=EMPTY)
    return Readout(images.clamp(0, 1), bins, strength, plan.bins)
