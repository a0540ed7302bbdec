"""Differential privacy on gradients: clip, then add Gaussian noise, at example or client level.

Example level, DP-SGD (Abadi et al., "Deep Learning with Differential Privacy", CCS 2016,
Algorithm 1). Each example's whole gradient g_i is clipped to L2 norm at most C, the clipped
gradients are summed, Gaussian noise of std sigma * C is added to every entry, and the sum is
divided by the batch size L:

    g_bar_i = g_i / max(1, ||g_i||_2 / C)                          # Eq. (1)  clip
    g_tilde = (1 / L) (sum_i g_bar_i + N(0, sigma^2 C^2 I))         # Eq. (2)  noise and average

Client level, DP-FedAvg (McMahan, Ramage, Talwar & Zhang, "Learning Differentially Private
Recurrent Language Models", ICLR 2018, Algorithm 1 with flat clipping and equal weights). Each
client's whole update Delta_k is clipped to norm S, the server sums, adds noise of std z * S and
divides by the number of clients n:

    pi(Delta_k, S) = Delta_k * min(1, S / ||Delta_k||_2)           # Eq. (3)  ClipFn
    Delta = (1 / n) (sum_k pi(Delta_k, S) + N(0, z^2 S^2 I))        # Eq. (4)

The papers write these as steps of their algorithms; the equation numbers are ours. Notation:
noise_multiplier = sigma (Abadi) = z (McMahan); max_norm = C (Abadi) = S (McMahan).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ..leakage import Params, soft_cross_entropy

__all__ = ["clip_per_example", "add_gaussian_noise", "dp_sgd_update", "clip_update", "dp_aggregate"]


def _check(noise_multiplier: float, max_norm: float) -> None:
    """Raise ValueError for a negative noise multiplier or a clipping norm that is not positive."""
    if not max_norm > 0:
        raise ValueError(f"max_norm (the clipping bound C) must be > 0, got {max_norm}")
    if not noise_multiplier >= 0:
        raise ValueError(f"noise_multiplier sigma must be >= 0 (0: clipping only), got {noise_multiplier}")


def global_norm(update: Params, dim0: bool = False) -> torch.Tensor:
    """L2 norm over every tensor of `update`: a scalar, or (B,) per example when `dim0` is a batch axis."""
    if dim0:
        return torch.stack([g.flatten(1).pow(2).sum(1) for g in update.values()]).sum(0).sqrt()  # (B,)
    return torch.stack([g.pow(2).sum() for g in update.values()]).sum().sqrt()


def clip_per_example(per_example_grads: Params, max_norm: float) -> Params:
    """Clip each example's whole gradient (all tensors together) to L2 norm <= C. Tensors are (B, *shape)."""
    _check(0.0, max_norm)
    norms = global_norm(per_example_grads, dim0=True)  # (B,)
    factor = 1.0 / torch.clamp(norms / max_norm, min=1.0)  # Eq. (1): 1 / max(1, ||g_i|| / C)
    return {name: g * factor.view(-1, *[1] * (g.dim() - 1)) for name, g in per_example_grads.items()}


def add_gaussian_noise(
    summed: Params, noise_multiplier: float, max_norm: float, generator: torch.Generator | None = None
) -> Params:
    """The sum plus independent N(0, sigma^2 C^2) noise on every entry (Eq. 2 and Eq. 4, before averaging)."""
    _check(noise_multiplier, max_norm)
    std = noise_multiplier * max_norm
    device = generator.device if generator is not None else torch.device("cpu")

    def noise(t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=generator, device=device, dtype=t.dtype).to(t.device)

    return {name: s + std * noise(s) for name, s in summed.items()}  # Eq. (2) / (4): + N(0, sigma^2 C^2 I)


def per_example_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Params:
    """grad_w L(f_w(x_i), y_i) for every example i at once (torch.func.vmap over grad): tensors (B, *shape)."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def loss(weights: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (weights, buffers), (x.unsqueeze(0),))  # (1, K)
        return soft_cross_entropy(logits, y.unsqueeze(0))

    return vmap(grad(loss), in_dims=(None, 0, 0))(params, images, labels)


def dp_sgd_update(
    model: nn.Module,
    images: torch.Tensor,  # (L, C, H, W)
    labels: torch.Tensor,  # (L,)
    noise_multiplier: float,
    max_norm: float,
    generator: torch.Generator | None = None,
) -> Params:
    """The noisy mean gradient a DP-SGD client sends: clip each example, sum, add noise, divide by L."""
    _check(noise_multiplier, max_norm)
    clipped = clip_per_example(per_example_gradients(model, images, labels), max_norm)  # Eq. (1)
    summed = {name: g.sum(0) for name, g in clipped.items()}
    noisy = add_gaussian_noise(summed, noise_multiplier, max_norm, generator)
    return {name: s / len(images) for name, s in noisy.items()}  # Eq. (2): 1 / L


def clip_update(update: Params, max_norm: float) -> Params:
    """Scale a client's whole update down to L2 norm <= S; one already inside is left as it is."""
    _check(0.0, max_norm)
    factor = torch.clamp(max_norm / global_norm(update).clamp_min(1e-12), max=1.0)  # Eq. (3): min(1, S / ||D||)
    return {name: u * factor for name, u in update.items()}


def dp_aggregate(
    client_updates: Sequence[Params], noise_multiplier: float, max_norm: float, generator: torch.Generator | None = None
) -> Params:
    """DP-FedAvg's server step: clip each client's update, sum, add N(0, z^2 S^2) noise, divide by n."""
    _check(noise_multiplier, max_norm)
    if not client_updates:
        raise ValueError("dp_aggregate needs at least one client update")
    clipped = [clip_update(u, max_norm) for u in client_updates]  # Eq. (3)
    summed = {name: torch.stack([c[name] for c in clipped]).sum(0) for name in clipped[0]}
    noisy = add_gaussian_noise(summed, noise_multiplier, max_norm, generator)
    return {name: s / len(client_updates) for name, s in noisy.items()}  # Eq. (4): 1 / n
