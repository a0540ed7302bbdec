"""Compress an update before sending it: fewer bits on the wire, and less for an attacker to invert.

Each function returns (the update the server receives, compression ratio). The ratio is
original bits / sent bits, where the original is every entry as a float32 (32 bits) and
the sent bits count what a receiver needs to rebuild the update, tensor by tensor:

    top_k, prune_gradient: 32 bits per kept value + the positions, coded the cheaper way:
                           a list of indices (ceil(log2 n) bits each) or a bitmap (n bits)
    quantise:              `bits` per entry + 64 bits for the tensor's min and max (float32)
    sign_compress:         1 bit per entry + 32 bits for the tensor's scale mean |g|

References: top-k sparsification as in Deep Gradient Compression (Lin et al., ICLR 2018);
stochastic rounding as in QSGD (Alistarh et al., NeurIPS 2017); signSGD (Bernstein et al.,
ICML 2018) with the scaled sign of EF-SignSGD (Karimireddy et al., ICML 2019); gradient pruning
as the defence of Deep Leakage from Gradients (Zhu, Liu & Han, NeurIPS 2019, Section 6).
Every tensor is compressed on its own (per layer, as DGC does).
"""

from __future__ import annotations

import math

import torch

from ..leakage import Params

FLOAT_BITS = 32

__all__ = ["top_k", "quantise", "sign_compress", "prune_gradient"]


def _ratio(update: Params, sent_bits: float) -> float:
    """32 bits per original entry over the bits sent."""
    return FLOAT_BITS * sum(u.numel() for u in update.values()) / sent_bits


def _position_bits(kept: int, n: int) -> int:
    """Bits to say which `kept` of `n` entries are sent: an index list or a bitmap, whichever is smaller."""
    return min(kept * max(1, math.ceil(math.log2(n))), n) if kept < n else 0


def _keep_largest(u: torch.Tensor, kept: int) -> torch.Tensor:
    """`u` with all but its `kept` largest-magnitude entries set to zero."""
    mask = torch.zeros(u.numel(), dtype=torch.bool, device=u.device)
    mask[u.detach().abs().flatten().topk(kept).indices] = True
    return u * mask.view(u.shape)


def _sparsify(update: Params, keep: dict[str, int]) -> tuple[Params, float]:
    """Keep keep[name] largest entries of each tensor; the ratio counts kept values and their positions."""
    sent = sum(FLOAT_BITS * keep[name] + _position_bits(keep[name], u.numel()) for name, u in update.items())
    return {name: _keep_largest(u, keep[name]) for name, u in update.items()}, _ratio(update, sent)


def top_k(update: Params, fraction: float) -> tuple[Params, float]:
    """Send only the ceil(fraction * n) largest-magnitude entries of each tensor; the rest are zero.

    (fraction * n is nudged by 1e-9 before rounding, so 0.1 * 5880 keeps 588, not 589; at least one is kept.)"""
    if not 0 < fraction <= 1:
        raise ValueError(f"top_k fraction (of entries kept) must be in (0, 1], got {fraction}")
    return _sparsify(update, {name: max(1, math.ceil(fraction * u.numel() - 1e-9)) for name, u in update.items()})


def prune_gradient(update: Params, fraction: float) -> tuple[Params, float]:
    """DLG's defence: zero the floor(fraction * n) smallest-magnitude entries of each tensor."""
    if not 0 <= fraction < 1:
        raise ValueError(f"prune_gradient fraction (of entries zeroed) must be in [0, 1), got {fraction}")
    return _sparsify(update, {name: u.numel() - math.floor(fraction * u.numel() + 1e-9) for name, u in update.items()})


def quantise(
    update: Params, bits: int, stochastic: bool = True, generator: torch.Generator | None = None
) -> tuple[Params, float]:
    """Round each tensor onto 2^bits evenly spaced levels between its min and max.

    With step Delta = (max - min) / (2^bits - 1) and x' = (x - min) / Delta, deterministic rounding
    sends round(x'), within Delta / 2 of x; stochastic rounding sends floor(x') + 1 with
    probability x' - floor(x'), within Delta of x and unbiased: E[sent] = x.
    """
    if int(bits) != bits or not 1 <= bits <= 16:
        raise ValueError(f"quantise bits must be a whole number from 1 to 16, got {bits}")
    levels = 2**bits - 1
    out = {}
    for name, u in update.items():
        lo, hi = u.min(), u.max()
        step = (hi - lo).clamp_min(torch.finfo(u.dtype).tiny) / levels  # Delta
        scaled = (u - lo) / step  # x' in [0, levels]
        if stochastic:
            device = generator.device if generator is not None else torch.device("cpu")
            draw = torch.rand(u.shape, generator=generator, device=device, dtype=u.dtype).to(u.device)
            rounded = scaled.floor() + (draw < scaled - scaled.floor()).to(u.dtype)
        else:
            rounded = scaled.round()
        out[name] = lo + rounded.clamp(0, levels) * step
    sent = sum(bits * u.numel() + 2 * FLOAT_BITS for u in update.values())
    return out, _ratio(update, sent)


def sign_compress(update: Params) -> tuple[Params, float]:
    """signSGD with a scale: each tensor becomes sign(g) * mean |g| (1 bit per entry + one float)."""
    out = {name: u.sign() * u.abs().mean() for name, u in update.items()}
    sent = sum(u.numel() + FLOAT_BITS for u in update.values())
    return out, _ratio(update, sent)
