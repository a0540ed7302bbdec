"""One federated round with a `DefenceConfig` in place: what the server's aggregate becomes.

    update = defended_round(model, [(images, labels), ...], config.defence, "fedsgd", generator=g)
    eps = round_epsilon(config.defence.dp, batch_size=1, local_size=500, steps=1, clients=1)

The order is the deployed one (DP-FedAvg with secure aggregation, Kairouz et al. 2021, Sec. 4.4):

    1. each client computes its message: the mean gradient or FedAvg weight change, or with
       example-level DP its DP-SGD version (per-image clip to C, noise sigma * C, Abadi et al. 2016);
    2. each client compresses its message (top-k, quantise, sign or prune);
    3. with client-level DP each client clips its message to norm S (McMahan et al. 2018, Eq. 3);
    4. the server sums the weighted messages, in the clear or by secure aggregation (Bonawitz et
       al. 2017), which hands it the same sum up to fixed-point rounding and nothing else;
    5. with client-level DP the server adds N(0, z^2 S^2) to the sum before dividing by n (Eq. 4).

Steps 3 and 5 are `dp_aggregate` split around the sum, so that the sum can be a secure one.
"""

from __future__ import annotations

import copy
import warnings
from typing import Optional, Sequence

import torch
from torch import nn

from ..config import CompressionConfig, Config, DefenceConfig, DPConfig
from ..leakage import Params, Protocol, client_update, model_parameters
from .accountant import epsilon
from .compression import prune_gradient, quantise, sign_compress, top_k
from .dp import add_gaussian_noise, clip_update, dp_sgd_update
from .secure_aggregation import flatten, secure_sum, unflatten

__all__ = ["defended_round", "compress", "round_epsilon", "defence_metrics"]


def compress(
    update: Params, settings: CompressionConfig, generator: Optional[torch.Generator] = None
) -> tuple[Params, float]:
    """The update as the chosen compression sends it, and its compression ratio (1.0 for "none")."""
    if settings.method == "top_k":
        return top_k(update, settings.fraction)
    if settings.method == "prune":
        return prune_gradient(update, settings.fraction)
    if settings.method == "quantise":
        return quantise(update, settings.bits, generator=generator)
    if settings.method == "sign":
        return sign_compress(update)
    return update, 1.0


def dp_sgd_message(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, protocol: Protocol, local_steps: int,
    local_lr: float, local_batch_size: int, dp: DPConfig, generator: Optional[torch.Generator],
) -> Params:
    """A DP-SGD client: its noisy mean gradient (FedSGD), or E local DP-SGD steps' weight change (FedAvg)."""
    if protocol == "fedsgd":
        return dp_sgd_update(model, images, labels, dp.noise_multiplier, dp.clip, generator)
    local, start = copy.deepcopy(model), model_parameters(model)
    n = len(images)
    size = n if local_batch_size <= 0 else min(local_batch_size, n)
    for step in range(local_steps):  # the same mini-batch schedule as `client_update`
        idx = (torch.arange(size, device=images.device) + step * size) % n
        g = dp_sgd_update(local, images[idx], labels[idx], dp.noise_multiplier, dp.clip, generator)
        with torch.no_grad():
            for name, w in local.named_parameters():
                w -= local_lr * g[name]
    return {name: start[name] - w.detach() for name, w in local.named_parameters()}


def _sum(messages: Sequence[Params], weights: Sequence[float], secure: bool, frac_bits: int = 16) -> Params:
    """sum_k weight_k * message_k: in the clear, or through secure aggregation with no dropouts."""
    weighted = [{name: w * m for name, m in message.items()} for message, w in zip(messages, weights)]
    if not secure:
        return {name: torch.stack([m[name] for m in weighted]).sum(0) for name in weighted[0]}
    result = secure_sum([flatten(m) for m in weighted], threshold=len(weighted), frac_bits=frac_bits)
    return unflatten(result.total.to(flatten(weighted[0]).device), weighted[0])


def defended_round(
    model: nn.Module,
    clients: Sequence[tuple[torch.Tensor, torch.Tensor]],  # [(images (n_k, C, H, W), labels (n_k,)), ...]
    defence: DefenceConfig,
    protocol: Protocol = "fedsgd",
    local_steps: int = 1,
    local_lr: float = 0.1,
    local_batch_size: int = 0,
    generator: Optional[torch.Generator] = None,
    frac_bits: int = 16,
) -> Params:
    """The aggregate the server ends the round with (steps 1 to 5 above); no defence gives `leak_update`'s.
    `frac_bits`: the secure sum's fixed point (secure_aggregation.encode)."""
    dp, noisy = defence.dp, defence.dp.noise_multiplier > 0
    params = model_parameters(model)
    messages = [
        dp_sgd_message(model, x, y, protocol, local_steps, local_lr, local_batch_size, dp, generator)
        if noisy and dp.level == "example"
        else client_update(model, params, x, y, protocol, local_steps, local_lr, local_batch_size)
        for x, y in clients
    ]  # step 1
    messages = [compress(m, defence.compression, generator)[0] for m in messages]  # step 2
    client_level = noisy and dp.level == "client"
    if client_level:
        messages = [clip_update(m, dp.clip) for m in messages]  # step 3, Eq. (3)
    sizes = [len(x) for x, _ in clients]
    weights = [1 / len(sizes)] * len(sizes) if client_level else [n_k / sum(sizes) for n_k in sizes]
    total = _sum(messages, weights, defence.secure_aggregation, frac_bits)  # step 4
    if client_level:  # step 5, Eq. (4): (sum + N(0, z^2 S^2)) / n = sum / n + N(0, (z S / n)^2)
        total = add_gaussian_noise(total, dp.noise_multiplier / len(sizes), dp.clip, generator)
    return total


def round_epsilon(
    dp: DPConfig, batch_size: int, local_size: int, steps: int = 1, rounds: int = 1, accountant: str = "rdp"
) -> Optional[float]:
    """Epsilon at `dp.delta` that the rounds spend, or None when there is no noise.

    Example level: every local DP-SGD step samples a mini-batch of `batch_size` from the client's
    `local_size` images, so q = batch_size / local_size and there are rounds * steps steps. Client
    level: every client takes part in every round, so q = 1 and there are `rounds` steps. Opacus's
    accountants assume Poisson sampling at rate q; the lab draws a fixed-size batch, the usual
    approximation (Abadi et al. 2016 do the same)."""
    if dp.noise_multiplier <= 0:
        return None
    q, count = (1.0, rounds) if dp.level == "client" else (min(1.0, batch_size / max(1, local_size)), rounds * steps)
    with warnings.catch_warnings():  # very large or small sigma: the best RDP order lies off Opacus's grid,
        warnings.filterwarnings("ignore", message="Optimal order is the")  # so the bound is looser, still valid
        return epsilon(dp.noise_multiplier, q, count, dp.delta, accountant)


def defence_metrics(config: Config, update: Params, population: int) -> dict[str, float]:
    """What metrics.json adds for a defended leak: epsilon and delta when noise is on (one round), the
    compression ratio when compression is on, and whether the sum was a secure one.

    The accounting treats `population` (the images the clients were drawn from: the bundled test
    sample, 500 for MNIST) as shared equally among the clients, so each client's local data holds
    population / clients images and its batch is a sample of them (see `round_epsilon`)."""
    d, leak, out = config.defence, config.leak, {}
    if d.dp.noise_multiplier > 0:
        batch = config.data.batch_size
        fedavg = leak.protocol == "fedavg"
        step_batch = min(leak.local_batch_size, batch) if fedavg and leak.local_batch_size > 0 else batch
        local_size = population // config.data.clients
        steps = leak.local_steps if fedavg else 1
        out["epsilon"] = round_epsilon(d.dp, step_batch, local_size, steps)
        out["delta"] = d.dp.delta
    if d.compression.method != "none":
        out["compression_ratio"] = compress(update, d.compression)[1]  # depends only on the shapes
    if d.secure_aggregation:
        out["secure_aggregation"] = True
    return out
