"""The four stages of Deep Leakage from Gradients (Zhu, Liu & Han 2019, Algorithm 1), one function each.

    1. dummy:    x' ~ N(0, 1) (or grey), y' ~ N(0, 1)             make_dummy
    2. gradient: grad W' = dL(F(x', W), y') / dW                    dummy_gradient
    3. compare:  D = || grad W' - grad W ||^2                        compare
    4. update:   x' <- x' - eta dD/dx',  y' <- y' - eta dD/dy'       dummy_update_direction + the optimiser

A caller can run them one at a time (the lab's stepper does) or let `GradientInversion` loop them.
"""

from __future__ import annotations

import torch

from ..labels import Auxiliary
from ..leakage import Leak, Params, client_update
from ..objectives import Distance

__all__ = ["INITS", "make_dummy", "dummy_gradient", "compare", "backpropagate"]


INITS = ("grey", "uniform", "normal", "class_mean")


def make_dummy(
    leak: Leak,
    init: str = "grey",
    generator: torch.Generator | None = None,
    noise: float = 1e-3,
    labels: torch.Tensor | None = None,
    auxiliary: Auxiliary | None = None,
) -> torch.Tensor:
    """Stage 1: one dummy image per leaked image, (n, C, H, W).

    "grey": 0.5 plus N(0, noise^2) (a start in the middle of the box, which measured best here);
    "uniform": U(0, 1); "normal": N(0, 1), the paper's choice; "class_mean": an attacker who holds
    labelled images of the same kind (`auxiliary`, none of the victims') starts each dummy at the
    mean of its images of that dummy's label (`labels`, (n,)), plus N(0, noise^2)."""
    shape = (leak.num_images, *leak.image_shape)
    gaussian = torch.randn(shape, generator=generator)
    if init == "grey":
        images = 0.5 + noise * gaussian
    elif init == "uniform":
        images = torch.rand(shape, generator=generator)
    elif init == "normal":
        images = gaussian
    elif init == "class_mean":
        images = _class_means(leak, labels, auxiliary) + noise * gaussian
    else:
        raise ValueError(f"unknown dummy init {init!r}; known: {', '.join(INITS)}")
    return images.to(next(iter(leak.params.values())).device)


def _class_means(
    leak: Leak, labels: torch.Tensor | None, auxiliary: Auxiliary | None
) -> torch.Tensor:
    """The mean auxiliary image of each dummy's label, (n, C, H, W)."""
    if labels is None or auxiliary is None:
        raise ValueError("the class_mean start needs the dummies' labels (true or recovered, not joint) and "
                         "the attacker's labelled auxiliary images")
    images, known = auxiliary
    if tuple(images.shape[1:]) != tuple(leak.image_shape):
        raise ValueError(f"the auxiliary images are {tuple(images.shape[1:])}, the victim takes {leak.image_shape}")
    labels = labels.cpu()
    missing = sorted(set(labels.tolist()) - set(known.tolist()))
    if missing:
        raise ValueError(f"the auxiliary images hold no image of class(es) {missing}")
    means = {c: images[known == c].mean(dim=0) for c in set(labels.tolist())}
    return torch.stack([means[c] for c in labels.tolist()]).cpu()


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
