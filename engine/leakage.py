"""What the server sees: the aggregated update of one federated round.

    leak = leak_update(model, [(images, labels), ...], protocol="fedsgd")

FedSGD (Shokri & Shmatikov 2015; McMahan et al. 2017): client k sends the mean gradient of its
batch, and the server averages the clients weighted by batch size,

    g = sum_k (n_k / n) * (1 / n_k) sum_{i in k} grad_w L(f_w(x_i), y_i)        # Eq. (1)

which is the mean gradient over all n images. FedAvg (McMahan et al. 2017): client k runs E local
SGD steps of learning rate eta from the global weights w_0 and sends the change,

    Delta_k = w_0 - w_E^k,  w_{e+1}^k = w_e^k - eta * grad_w L(batch_e; w_e^k)     # Eq. (2)

and the server averages Delta = sum_k (n_k / n) Delta_k. For E = 1 and full batches Delta = eta * g.
The same `client_update` produces the leaked update here and the dummy update inside an attack, so
the two are computed identically (the attack differentiates through it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import nn
from torch.func import functional_call

Protocol = Literal["fedsgd", "fedavg"]
Params = dict[str, torch.Tensor]

__all__ = ["Leak", "leak_update", "client_update", "batch_gradient", "model_parameters", "soft_cross_entropy"]


def model_parameters(model: nn.Module) -> Params:
    """The global weights w_0 the server sent, detached: {name: tensor}."""
    return {name: p.detach() for name, p in model.named_parameters()}


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy; `targets` are class indices (B,) or label distributions (B, K)."""
    if targets.dim() == 1:
        return nn.functional.cross_entropy(logits, targets)
    return -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()


def batch_gradient(model: nn.Module, params: Params, images: torch.Tensor, targets: torch.Tensor) -> Params:
    """grad_w of the batch-mean cross-entropy at weights `params`.

    The graph is kept (create_graph) whenever the images, targets or weights require gradients,
    so an attack can differentiate the gradient itself with respect to its dummy images.
    """
    weights = {name: w if w.requires_grad else w.detach().requires_grad_() for name, w in params.items()}
    loss = soft_cross_entropy(functional_call(model, weights, (images,)), targets)
    keep = images.requires_grad or targets.requires_grad or any(w.requires_grad for w in params.values())
    grads = torch.autograd.grad(loss, list(weights.values()), create_graph=keep)
    return dict(zip(weights, grads))


def client_update(
    model: nn.Module,
    params: Params,
    images: torch.Tensor,  # (n_k, C, H, W)
    targets: torch.Tensor,  # (n_k,) or (n_k, K)
    protocol: Protocol = "fedsgd",
    local_steps: int = 1,
    local_lr: float = 0.1,
    local_batch_size: int = 0,
) -> Params:
    """One client's message: its mean gradient (Eq. 1) or its FedAvg weight change (Eq. 2).

    FedAvg mini-batches walk through the client's images in order, `local_batch_size` at a time
    (0: all of them), wrapping around; the attacker assumes the same schedule when it unrolls them.
    """
    if protocol == "fedsgd":
        return batch_gradient(model, params, images, targets)
    n = len(images)
    size = n if local_batch_size <= 0 else min(local_batch_size, n)
    weights = dict(params)
    for step in range(local_steps):
        idx = (torch.arange(size, device=images.device) + step * size) % n
        g = batch_gradient(model, weights, images[idx], targets[idx])
        weights = {name: w - local_lr * g[name] for name, w in weights.items()}  # Eq. (2)
    return {name: params[name] - weights[name] for name in params}


@dataclass(frozen=True)
class Leak:
    """The aggregated update the server receives in one round, and what it knows besides.

    `update` holds, per parameter, the weighted mean over clients of their messages: the mean
    gradient (FedSGD) or the weight change w_0 - w_E (FedAvg). The server also knows the model it
    sent (`model`, `params`), each client's number of images and the local training schedule.
    It never sees an image or a label.
    """

    protocol: Protocol
    model: nn.Module
    params: Params  # w_0, the weights the server sent
    image_shape: tuple[int, int, int]  # (C, H, W) the model takes
    update: Params  # the aggregate: mean gradient or mean weight change
    client_sizes: tuple[int, ...]  # n_k, images per client
    local_steps: int = 1
    local_lr: float = 0.1
    local_batch_size: int = 0

    @property
    def num_images(self) -> int:
        return sum(self.client_sizes)

    @property
    def num_clients(self) -> int:
        return len(self.client_sizes)

    @property
    def num_classes(self) -> int:
        return int(list(self.update.values())[-1].shape[0])

    @property
    def observed(self) -> int:
        """Equations: entries of the update the server sees."""
        return sum(u.numel() for u in self.update.values())

    @property
    def unknowns(self) -> int:
        """Unknowns: every pixel of every image, plus one label per image."""
        c, h, w = self.image_shape
        return self.num_images * (c * h * w + 1)

    @property
    def gradient_scale(self) -> float:
        """How the update relates to a gradient: 1 for FedSGD, about eta * E for FedAvg."""
        return 1.0 if self.protocol == "fedsgd" else self.local_lr * self.local_steps

    def layer_norms(self) -> dict[str, float]:
        """L2 norm of the update per parameter tensor, for display."""
        return {name: float(u.norm()) for name, u in self.update.items()}

    def weights(self) -> torch.Tensor:
        """Client weights n_k / n of the aggregate."""
        sizes = torch.tensor(self.client_sizes, dtype=torch.float32)
        return sizes / sizes.sum()

    def __repr__(self) -> str:
        what = "mean gradient" if self.protocol == "fedsgd" else f"weight change after {self.local_steps} local steps"
        return (
            f"Leak({self.protocol}: the server sees the {what} averaged over {self.num_clients} client(s) "
            f"holding {self.num_images} image(s); {self.observed:,} numbers)"
        )


def leak_update(
    model: nn.Module,
    clients: Sequence[tuple[torch.Tensor, torch.Tensor]],  # [(images (n_k,C,H,W), labels (n_k,)), ...]
    protocol: Protocol = "fedsgd",
    local_steps: int = 1,
    local_lr: float = 0.1,
    local_batch_size: int = 0,
) -> Leak:
    """Run one round: every client computes its message, the server averages them by size."""
    if not clients:
        raise ValueError("a round needs at least one client")
    params = model_parameters(model)
    sizes = tuple(len(images) for images, _ in clients)
    total = sum(sizes)
    update = {name: torch.zeros_like(p) for name, p in params.items()}
    for (images, labels), n_k in zip(clients, sizes):
        message = client_update(model, params, images, labels, protocol, local_steps, local_lr, local_batch_size)
        for name in update:
            update[name] += (n_k / total) * message[name].detach()
    image_shape = tuple(clients[0][0].shape[1:])
    return Leak(protocol, model, params, image_shape, update, sizes, local_steps, local_lr, local_batch_size)
