"""The federated task, with nothing of Flower in it: the clients' data, their local training, the test.

    data = federated_data(config)                      # every client's share of the bundled train sample
    x, y = data.client_batch(k, server_round, seed)    # client k's images in the order it trains on them
    delta = local_update(model, params, x, y, config)  # its message: Delta_k = w_t - w_E^k (Eq. 1)
    loss, accuracy = evaluate(model, params, data.test_images, data.test_labels)
    start = initial_params(config, model)              # round 0's model (pretrained on public images)

FedAvg's client (McMahan et al. 2017, Algorithm 1, ClientUpdate): starting from the global weights
w_t, E local epochs of mini-batch SGD of size B and learning rate eta, here as the lab's own
`client_update` walks them (the same schedule an attacker unrolls), for ceil(E n_k / B) steps:

    w <- w - eta * grad_w L(b; w)                                        # Eq. (1), FedAvg
    w <- w - eta * (grad_w L(b; w) + mu (w - w_t))                       # Eq. (2), FedProx (Li et al. 2020)

then the message Delta_k = w_t - w_E. The defences of `config.defence` apply on the client as
everywhere else in the lab: example-level DP-SGD replaces each step's gradient by its clipped and
noised version (Abadi et al. 2016), then the message is compressed.

The clients hold the bundled train sample minus the attacker's public images (its first
`PUBLIC_IMAGES`, see `engine.experiment.auxiliary_images`), split IID, by Dirichlet or by shards
with the `data` section's settings; the server tests on the bundled test sample.

Round 0's model is the architecture's seeded initial weights or, with `federation.pretrain` = P > 0,
those weights after P epochs of the same SGD on the server's own public images (no client holds
them): a server rarely starts from nothing, and model replacement (Bagdasaryan et al. 2020) aims
at a model that has already learnt, whose honest updates are small.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import torch
from torch import nn
from torch.func import functional_call

from ..config import Config
from ..data import Batch, ImageSet, load_dataset, split_clients, to_model_input
from ..leakage import Params, batch_gradient, client_update, model_parameters, soft_cross_entropy

__all__ = ["PUBLIC_IMAGES", "FederatedData", "federated_data", "initial_params", "local_steps", "local_update",
           "evaluate", "round_generator"]

PUBLIC_IMAGES = 1000  # the first train images belong to the attacker's public set, never to a client


@dataclass(frozen=True, eq=False)
class FederatedData:
    """Every client's share of the train sample, and the server's test sample, as the model takes them."""

    train: ImageSet  # the whole train sample (the clients' rows start at PUBLIC_IMAGES)
    shares: tuple[torch.Tensor, ...]  # rows of `train` each client holds
    train_images: torch.Tensor  # (N, C, H, W), model input
    test_images: torch.Tensor  # (M, C, H, W)
    test_labels: torch.Tensor  # (M,)

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    def client_batch(self, client: int, server_round: int, seed: int) -> Batch:
        """Client `client`'s whole share, shuffled afresh each round (seeded by seed, round and client)."""
        share = self.shares[client]
        order = torch.randperm(len(share), generator=round_generator(seed, server_round, client))
        rows = share[order]
        return Batch(self.train_images[rows], self.train.labels[rows], rows)


def round_generator(seed: int, server_round: int, client: int) -> torch.Generator:
    """The generator of one client's randomness in one round: its shuffle, its DP noise, its rounding."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + server_round) * 1_000_003 + client) % 2**63)


@lru_cache(maxsize=4)
def _cached(dataset: str, root: Optional[str], download: bool, clients: int, split: str, alpha: float,
            shards: int, seed: int) -> FederatedData:
    from ..experiment import model_input_shape

    try:
        train = load_dataset(dataset, "train", root=root, download=download)
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(f"a federated run needs a train part of {dataset!r}: {err}") from None
    test = load_dataset(dataset, "test", root=root, download=download)
    pool = torch.arange(PUBLIC_IMAGES, len(train))
    if len(pool) < clients:
        raise ValueError(
            f"{clients} clients but only {len(pool)} train images outside the attacker's public "
            f"{PUBLIC_IMAGES}: every client needs at least one image; use fewer clients"
        )
    parts = split_clients(train.labels[pool], clients, split, alpha, shards, seed)  # type: ignore[arg-type]
    channels, size = model_input_shape(dataset)
    return FederatedData(
        train, tuple(pool[p] for p in parts), to_model_input(train.images, channels, size),
        to_model_input(test.images, channels, size), test.labels,
    )


def federated_data(config: Config) -> FederatedData:
    """The clients' shares for `config` (data set, split and seed from `data`, count from `federation`)."""
    d, f = config.data, config.federation
    return _cached(d.dataset, d.root, d.download, f.clients, d.split, d.alpha, d.shards_per_client, config.seed)


def initial_params(config: Config, model: nn.Module) -> Params:
    """Round 0's global weights: `model`'s own, or after `federation.pretrain` epochs on the public images."""
    f = config.federation
    params = {name: w.detach().clone() for name, w in model_parameters(model).items()}
    if f.pretrain == 0:
        return params
    public = federated_data(config)
    images, labels = public.train_images[:PUBLIC_IMAGES], public.train.labels[:PUBLIC_IMAGES]
    steps = math.ceil(f.pretrain * len(images) / f.batch_size)  # ceil(P n / B), the clients' schedule
    delta = client_update(model, params, images, labels, "fedavg", steps, f.lr, f.batch_size)  # Eq. (1)
    return {name: params[name] - delta[name].detach() for name in params}


def local_steps(images: int, config: Config) -> int:
    """SGD steps of E epochs over n_k images in mini-batches of B: ceil(E n_k / B)."""
    f = config.federation
    return math.ceil(f.local_epochs * images / min(f.batch_size, images))


def _proximal_update(model: nn.Module, params: Params, images: torch.Tensor, labels: torch.Tensor,
                     steps: int, lr: float, batch: int, mu: float) -> Params:
    """FedProx's local solver: `client_update`'s schedule with the proximal pull of Eq. (2)."""
    n, weights = len(images), dict(params)
    size = min(batch, n)
    for step in range(steps):
        idx = (torch.arange(size) + step * size) % n
        g = batch_gradient(model, weights, images[idx], labels[idx])
        weights = {k: w - lr * (g[k] + mu * (w - params[k])) for k, w in weights.items()}  # Eq. (2)
    return {k: params[k] - weights[k] for k in params}


def local_update(model: nn.Module, params: Params, images: torch.Tensor, labels: torch.Tensor, config: Config,
                 generator: Optional[torch.Generator] = None, proximal_mu: float = 0.0) -> Params:
    """One client's message Delta_k = w_t - w_E for its images (in training order), defences applied."""
    from ..defences import compress
    from ..defences.pipeline import dp_sgd_message

    f, dp = config.federation, config.defence.dp
    steps, size = local_steps(len(images), config), min(f.batch_size, len(images))
    if dp.noise_multiplier > 0 and dp.level == "example":
        local = copy.deepcopy(model)  # the shared architecture keeps its own weights
        local.load_state_dict(params, strict=False)
        delta = dp_sgd_message(local, images, labels, "fedavg", steps, f.lr, size, dp, generator)
    elif proximal_mu > 0:
        delta = _proximal_update(model, params, images, labels, steps, f.lr, size, proximal_mu)
    else:
        delta = client_update(model, params, images, labels, "fedavg", steps, f.lr, size)  # Eq. (1)
    delta = {k: v.detach() for k, v in delta.items()}
    return compress(delta, config.defence.compression, generator)[0]


def evaluate(model: nn.Module, params: Params, images: torch.Tensor, labels: torch.Tensor,
             chunk: int = 500) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (a fraction) of the weights `params` on the test images."""
    loss, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(images), chunk):
            x, y = images[start:start + chunk], labels[start:start + chunk]
            logits = functional_call(model, params, (x,))
            loss += float(soft_cross_entropy(logits, y)) * len(y)
            correct += int((logits.argmax(dim=1) == y).sum())
    return loss / len(labels), correct / len(labels)
