"""Federated clients: split a set's indices among clients (IID or non-IID) and draw each client's batch.

* ``iid``: a random permutation cut into near-equal parts.
* ``dirichlet``: for each class c, proportions p_c ~ Dir(alpha * 1_K) over the K clients, and the class's
  examples are dealt out in those proportions (Hsu, Qi & Brown 2019, "Measuring the Effects of Non-Identical
  Data Distribution for Federated Visual Classification", arXiv:1909.06335). Small alpha: each client sees
  few classes; large alpha: close to IID.
* ``shards``: sort by label, cut into K * shards_per_client shards, give each client shards_per_client random
  shards (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from Decentralized Data",
  Sec. 3: 200 shards of 300 MNIST digits, 2 per client).

Every index is used at most once and every client gets at least one. Draws use a numpy Generator seeded with
``seed`` (numpy, because torch has no seeded Dirichlet sampler).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch

from .batch import Batch
from .imageset import ImageSet

__all__ = ["SplitMethod", "split_clients", "class_histogram", "sample_client_batches"]

SplitMethod = Literal["iid", "dirichlet", "shards"]


def split_clients(
    labels: torch.Tensor,
    num_clients: int,
    method: SplitMethod = "iid",
    alpha: float = 0.5,
    shards_per_client: int = 2,
    seed: int = 0,
) -> list[torch.Tensor]:
    """Disjoint index tensors into ``labels`` (N,), one sorted int64 tensor per client, none empty."""
    y = np.asarray(torch.as_tensor(labels), dtype=np.int64)
    n = len(y)
    if num_clients < 1 or num_clients > n:
        raise ValueError(f"cannot give each of {num_clients} clients at least one of {n} examples")
    rng = np.random.default_rng(seed)
    if method == "iid":
        parts = np.array_split(rng.permutation(n), num_clients)
    elif method == "dirichlet":
        parts = _dirichlet(y, num_clients, alpha, rng)
    elif method == "shards":
        parts = _shards(y, num_clients, shards_per_client, rng)
    else:
        raise ValueError(f"unknown split method {method!r}; choose one of iid, dirichlet, shards")
    return [torch.from_numpy(np.sort(p).astype(np.int64)) for p in parts]


def _dirichlet(y: np.ndarray, k: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Per-class Dirichlet(alpha) proportions over ``k`` clients (Hsu et al. 2019)."""
    if not alpha > 0:
        raise ValueError(f"dirichlet alpha must be positive, got {alpha}")
    parts: list[list[int]] = [[] for _ in range(k)]
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        p = rng.dirichlet(np.full(k, alpha))  # p_c ~ Dir(alpha * 1_K)
        cuts = np.round(np.cumsum(p)[:-1] * len(rows)).astype(int)
        for client, chunk in enumerate(np.split(rows, cuts)):
            parts[client].extend(chunk.tolist())
    return _fill_empty([np.asarray(p, dtype=np.int64) for p in parts], rng)


def _fill_empty(parts: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Give each empty client one random example of the currently largest client (small alpha leaves some empty)."""
    for i in range(len(parts)):
        if len(parts[i]) == 0:
            donor = int(np.argmax([len(p) for p in parts]))
            take = int(rng.integers(len(parts[donor])))
            parts[i] = parts[donor][take : take + 1]
            parts[donor] = np.delete(parts[donor], take)
    return parts


def _shards(y: np.ndarray, k: int, per_client: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Sort by label, cut into k * per_client shards, deal per_client random shards to each client (McMahan et al.)."""
    num_shards = k * per_client
    if per_client < 1 or num_shards > len(y):
        raise ValueError(
            f"cannot cut {len(y)} examples into {k} clients x {per_client} shards = {num_shards} non-empty shards"
        )
    shuffled = rng.permutation(len(y))
    order = shuffled[np.argsort(y[shuffled], kind="stable")]  # sorted by label, random within a label
    shards = np.array_split(order, num_shards)
    deal = rng.permutation(num_shards).reshape(k, per_client)
    return [np.concatenate([shards[s] for s in row]) for row in deal]


def class_histogram(labels: torch.Tensor, parts: list[torch.Tensor], num_classes: int) -> torch.Tensor:
    """(K, num_classes) int64: how many examples of each class each of the K parts holds."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    rows = [torch.bincount(labels[p.long()], minlength=num_classes) for p in parts]
    return torch.stack(rows) if rows else torch.zeros(0, num_classes, dtype=torch.int64)


def client_shares(
    dataset: ImageSet,
    num_clients: int,
    method: SplitMethod = "iid",
    alpha: float = 0.5,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    shards_per_client: int = 2,
) -> list[torch.Tensor]:
    """Rows of ``dataset`` each client holds: its whole share, which its batch is drawn from.

    With ``classes`` only images of those labels are split."""
    pool = torch.arange(len(dataset))
    if classes is not None:
        pool = torch.nonzero(torch.isin(dataset.labels, torch.as_tensor(list(classes)))).flatten()
        if len(pool) == 0:
            raise ValueError(f"no images of classes {list(classes)} in {dataset.name!r}")
    return [pool[part] for part in split_clients(dataset.labels[pool], num_clients, method, alpha, shards_per_client, seed)]


def sample_client_batches(
    dataset: ImageSet,
    num_clients: int,
    batch_size: int,
    method: SplitMethod = "iid",
    alpha: float = 0.5,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    shards_per_client: int = 2,
) -> list[Batch]:
    """Split ``dataset`` among ``num_clients`` clients, then draw ``batch_size`` of each client's own images.

    With ``classes`` only images of those labels are split. Batch indices are rows of ``dataset``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    parts = client_shares(dataset, num_clients, method, alpha, seed, classes, shards_per_client)
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for k, part in enumerate(parts):
        if len(part) < batch_size:
            raise ValueError(
                f"client {k} holds only {len(part)} images, fewer than batch_size={batch_size}; "
                "use fewer clients, a smaller batch, or a larger alpha"
            )
        chosen = part[torch.randperm(len(part), generator=generator)[:batch_size]]
        batches.append(Batch.from_indices(dataset, chosen))
    return batches
