"""The four stages of Deep Leakage from Gradients (Zhu, Liu & Han 2019, Algorithm 1), one function each.

    1. dummy:    x' ~ N(0, 1) (or grey), y' ~ N(0, 1)             make_dummy
    2. gradient: grad W' = dL(F(x', W), y') / dW                    dummy_gradient
    3. compare:  D = || grad W' - grad W ||^2                        compare
    4. update:   x' <- x' - eta dD/dx',  y' <- y' - eta dD/dy'       dummy_update_direction + the optimiser

A caller can run them one at a time (the lab's stepper does) or let `GradientInversion` loop them.
"""

from __future__ import annotations

import torch

from ..leakage import Leak, Params, client_update
from ..objectives import Distance

__all__ = ["make_dummy", "dummy_gradient", "compare", "backpropagate"]


def make_dummy(
    leak: Leak,
    init: str = "grey",
    generator: torch.Generator | None = None,
    noise: float = 1e-3,
) -> torch.Tensor:
    """Stage 1: one dummy image per leaked image, (n, C, H, W).

    "grey": 0.5 plus N(0, noise^2) (a start in the middle of the box, which measured best here);
    "uniform": U(0, 1); "normal": N(0, 1), the paper's choice."""
    shape = (leak.num_images, *leak.image_shape)
    gaussian = torch.randn(shape, generator=generator)
    if init == "grey":
        images = 0.5 + noise * gaussian
    elif init == "uniform":
        images = torch.rand(shape, generator=generator)
    elif init == "normal":
        images = gaussian
    else:
        raise ValueError(f"unknown dummy init {init!r}; known: grey, uniform, normal")
    return images.to(next(iter(leak.params.values())).device)


def dummy_gradient(leak: Leak, images: torch.Tensor, targets: torch.Tensor) -> Params:
    """Stage 2: the update the server would see if the clients held the dummies (Eq. 1 or 2 of
    `engine.leakage`), differentiable in the dummies. The dummies are split among clients by the
    leaked client sizes; under FedSGD the weighted mean of client means is the plain mean."""
    if leak.protocol == "fedsgd":
        return client_update(leak.model, leak.params, images, targets, "fedsgd")
    update: Params = {}
    start = 0
    for n_k, weight in zip(leak.client_sizes, leak.weights().tolist()):
        part = slice(start, start + n_k)
        start += n_k
        message = client_update(
            leak.model, leak.params, images[part], targets[part], "fedavg",
            leak.local_steps, leak.local_lr, leak.local_batch_size,
        )
        for name, value in message.items():
            update[name] = update[name] + weight * value if name in update else weight * value
    return update


def compare(dummy: Params, leak: Leak, distance: Distance) -> torch.Tensor:
    """Stage 3: the gradient distance D between the dummy update and the leaked one."""
    return distance(dummy, leak.update)


def backpropagate(loss: torch.Tensor, variables: torch.Tensor) -> torch.Tensor:
    """Stage 4, first half: dD/dx' through the dummy gradient (a second-order derivative).
    The optimiser turns it into the step."""
    (gradient,) = torch.autograd.grad(loss, variables)
    return gradient
