"""Labels from the gradient: the server reads them off the last layer before any optimisation.

For a linear last layer z = W h + b under the batch-mean cross-entropy,

    dL/db = (1/n) sum_i (softmax(z_i) - onehot(y_i))                                  # Eq. (1)
    dL/dW = (1/n) sum_i (softmax(z_i) - onehot(y_i)) h_i^T                            # Eq. (2)

iDLG (Zhao, Mopuri & Bilen 2020): with one image, only the true class has a negative entry in
Eq. (1), and, when the features h are non-negative (sigmoid, ReLU), a negative row sum in Eq. (2).

Batch counts, in the line of LLG (Wainakh et al. 2022) and iLRG (Ma et al. 2023): solve Eq. (1)
for the number of images of each class,

    count_c = n * (mean_softmax_c - dL/db_c)                                          # Eq. (3)

where mean_softmax is not observed: it is estimated from the model's output on random dummy
inputs. Rounding the estimate can go wrong for the few classes whose softmax moves with the
input, so `label_candidates` also lists the nearest other multisets; an attack tries each and
keeps the one whose gradient fits best (a wrong multiset leaves a high gradient loss).

An attacker who holds some labelled images of the same kind (public data, none of the victims'),
as LLG+ assumes, does better: the mean update one image of class c sends,

    E_c = mean over its images x of class c of [(softmax(z(x)) - e_c) h(x)^T, softmax(z(x)) - e_c]   # Eq. (4)

makes the whole last-layer update (weights and bias, K x (D + 1) numbers) linear in the counts,

    [dL/dW, dL/db] ~= sum_c (count_c / n) E_c,      sum_c count_c = n                              # Eq. (5)

so the counts are a least-squares fit with K unknowns and K x (D + 1) equations, and a candidate
multiset is ranked by how far its Eq. (5) misses the leaked update. Measured on 100 batches of
bundled MNIST on the untrained LeNet (`bench/dlg_speed.py`): exact multisets 100% at B = 8 and
98% at 16 with 1000 auxiliary images (random probes: 96% and 82%). Eq. (5) is exact in
expectation for FedSGD and one-step FedAvg; after several local steps the softmax drifts during
local training and neither estimate holds (an attacker would simulate the local steps).
"""

from __future__ import annotations

import heapq
import math
import itertools

import torch
from torch import nn
from torch.func import functional_call

from .leakage import Leak

__all__ = [
    "Auxiliary", "last_layer", "idlg_label", "class_updates", "estimate_counts", "label_candidates",
    "counts_to_labels", "recover_labels",
]

Auxiliary = tuple[torch.Tensor, torch.Tensor]  # (images (M, C, H, W), labels (M,)) the attacker holds


def last_layer(leak: Leak) -> tuple[torch.Tensor, torch.Tensor]:
    """The aggregated update of the classifier: weight (K, D) and bias (K,), as gradients."""
    names = list(leak.update)
    weight, bias = leak.update[names[-2]], leak.update[names[-1]]
    if bias.dim() != 1 or weight.dim() != 2 or weight.shape[0] != bias.shape[0]:
        raise ValueError("label recovery needs a model that ends in a linear layer with a bias")
    scale = leak.gradient_scale
    return weight / scale, bias / scale


def idlg_label(leak: Leak) -> int:
    """iDLG: the class whose last-layer row has a negative sum (one image, non-negative features)."""
    if leak.num_images != 1:
        raise ValueError(f"iDLG reads the label of a single image; this leak holds {leak.num_images}")
    weight, _ = last_layer(leak)
    return int(weight.sum(dim=1).argmin())


@torch.no_grad()
def _probe_softmax(leak: Leak, samples: int, density: float, seed: int, probes: torch.Tensor | None) -> torch.Tensor:
    """The model's softmax on `probes` (B, C, H, W), by default `samples` random binary images."""
    device = next(iter(leak.params.values())).device
    if probes is None:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        probes = (torch.rand((samples, *leak.image_shape), generator=generator) < density).float()
    return functional_call(leak.model, leak.params, (probes.to(device),)).softmax(dim=1)  # (samples, K)


def mean_softmax(
    leak: Leak, samples: int = 64, density: float = 0.2, seed: int = 0, probes: torch.Tensor | None = None
) -> torch.Tensor:
    """Estimate of the batch's mean softmax: the model's mean output on random binary images, or on
    `probes` the attacker believes look like the data (an image prior's samples do better)."""
    return _probe_softmax(leak, samples, density, seed, probes).mean(dim=0)  # (K,)


def softmax_spread(
    leak: Leak, samples: int = 64, density: float = 0.2, seed: int = 0, probes: torch.Tensor | None = None
) -> torch.Tensor:
    """How much each class's softmax moves with the input: its standard deviation over the probes, (K,)."""
    return _probe_softmax(leak, samples, density, seed, probes).std(dim=0).cpu()  # (K,)


@torch.no_grad()
def class_updates(leak: Leak, auxiliary: Auxiliary) -> torch.Tensor:
    """Eq. (4): the mean last-layer update of one image of each class, from the attacker's labelled
    images: (K, K * D + K), rows laid out as `torch.cat([dW.flatten(), db])`. The features h are
    the input of the model's last linear layer, caught with a forward hook."""
    images, labels = auxiliary
    weight, _ = last_layer(leak)
    classifier = [m for m in leak.model.modules() if isinstance(m, nn.Linear)][-1]
    if classifier.weight.shape != weight.shape:
        raise ValueError("the model's last linear layer is not the classifier the update ends with")
    missing = sorted(set(range(leak.num_classes)) - set(labels.unique().tolist()))
    if missing:
        raise ValueError(f"the auxiliary images hold no image of class(es) {missing}")
    device = weight.device
    features: list[torch.Tensor] = []
    hook = classifier.register_forward_hook(lambda module, inputs, output: features.append(inputs[0]))
    try:
        logits = functional_call(leak.model, leak.params, (images.to(device),))
    finally:
        hook.remove()
    labels = labels.to(device)
    error = logits.softmax(dim=1) - nn.functional.one_hot(labels, leak.num_classes).float()  # (M, K)
    rows = []
    for c in range(leak.num_classes):
        mine = labels == c
        rows.append(torch.cat([(error[mine].T @ features[0][mine] / mine.sum()).flatten(), error[mine].mean(dim=0)]))
    return torch.stack(rows).cpu()


def _leaked_last_layer(leak: Leak) -> torch.Tensor:
    """The leaked last-layer update as one vector, laid out like the rows of `class_updates`."""
    weight, bias = last_layer(leak)
    return torch.cat([weight.flatten(), bias]).cpu()


def _fit_counts(leak: Leak, updates: torch.Tensor) -> torch.Tensor:
    """Eq. (5) solved for real-valued counts: least squares with the counts summing to n, (K,)."""
    a, target = updates.double().T, _leaked_last_layer(leak).double()  # (P, K), (P,)
    k = a.shape[1]
    system = torch.zeros((k + 1, k + 1), dtype=torch.float64)  # the KKT system of the constrained fit
    system[:k, :k] = a.T @ a
    system[:k, k] = system[k, :k] = 1.0
    rhs = torch.cat([a.T @ target, torch.ones(1, dtype=torch.float64)])
    shares = torch.linalg.lstsq(system, rhs).solution[:k]
    return (leak.num_images * shares).float()


def estimate_counts(
    leak: Leak, samples: int = 64, seed: int = 0, probes: torch.Tensor | None = None,
    auxiliary: Auxiliary | None = None,
) -> torch.Tensor:
    """Real-valued counts per class before rounding, (K,): Eq. (5) fitted with the attacker's
    labelled `auxiliary` images when given, else Eq. (3) with the mean softmax on `probes`."""
    if auxiliary is not None:
        return _fit_counts(leak, class_updates(leak, auxiliary))
    _, bias = last_layer(leak)
    return leak.num_images * (mean_softmax(leak, samples, seed=seed, probes=probes) - bias.cpu())


def round_counts(estimate: torch.Tensor, total: int) -> torch.Tensor:
    """Integer counts summing to `total`: clip at 0, floor, hand the rest out by largest remainder.
    An estimate ten times above `total` (a drowned update: counts of 1e12) is first scaled down to
    `total`, so that the loop below takes at most 10 (total + K) steps, not 1e12."""
    clipped = estimate.nan_to_num(nan=0.0, posinf=float(total)).clamp(min=0)
    if float(clipped.sum()) > 10 * (total + len(clipped)):
        clipped = clipped * (total / float(clipped.sum()))
    counts = clipped.floor().long()
    missing = total - int(counts.sum())
    if missing > 0:
        order = (clipped - counts).argsort(descending=True)
        counts[order[:missing]] += 1
    while int(counts.sum()) > total:  # too many: take from the class that exceeds its estimate most
        excess = torch.where(counts > 0, counts - clipped, torch.tensor(-math.inf))
        counts[int(excess.argmax())] -= 1
    return counts


def label_candidates(
    leak: Leak, limit: int = 4, samples: int = 64, seed: int = 0, probes: torch.Tensor | None = None,
    auxiliary: Auxiliary | None = None,
) -> list[torch.Tensor]:
    """The `limit` integer count vectors (K,) summing to n most consistent with the gradient, most
    likely first. With `auxiliary` labelled images, a multiset's cost is how far Eq. (5) misses the
    leaked last-layer update. Without, it is its distance to the Eq. (3) estimate; that estimate is
    least sure for the classes whose softmax moves with the input, so each class's squared error is
    weighed by the inverse of its spread (a Mahalanobis distance with a diagonal covariance). A
    best-first search from the rounded estimate, one move (an image from class a to class b) at a
    time, lists the nearest multisets."""
    if auxiliary is not None:
        updates = class_updates(leak, auxiliary)
        estimate = _fit_counts(leak, updates)
        design, target = updates.double().T / leak.num_images, _leaked_last_layer(leak).double()

        def cost(counts: torch.Tensor) -> float:
            return float((design @ counts.double() - target).norm())
    else:
        estimate = estimate_counts(leak, samples, seed, probes)
        variance = (leak.num_images * softmax_spread(leak, samples, seed=seed, probes=probes)) ** 2 + 0.05

        def cost(counts: torch.Tensor) -> float:
            return float(((counts - estimate) ** 2 / variance).sum())

    start = round_counts(estimate, leak.num_images)

    frontier = [(cost(start), tuple(start.tolist()))]
    seen = {frontier[0][1]}
    found: list[tuple[float, tuple[int, ...]]] = []
    while frontier and len(found) < 4 * limit:  # search wider than asked, then keep the cheapest
        found.append(heapq.heappop(frontier))
        counts = found[-1][1]
        for a, b in itertools.permutations(range(len(counts)), 2):
            if counts[a] > 0:
                other = list(counts)
                other[a] -= 1
                other[b] += 1
                key = tuple(other)
                if key not in seen:
                    seen.add(key)
                    heapq.heappush(frontier, (cost(torch.tensor(other)), key))
    return [torch.tensor(counts) for _, counts in sorted(found)[:limit]]


def counts_to_labels(counts: torch.Tensor) -> torch.Tensor:
    """(K,) counts -> (n,) sorted labels, one per dummy image."""
    return torch.repeat_interleave(torch.arange(len(counts)), counts)


def recover_labels(
    leak: Leak, probes: torch.Tensor | None = None, auxiliary: Auxiliary | None = None
) -> torch.Tensor:
    """The attacker's best single guess of the batch's labels, (n,) sorted: iDLG for one image; for
    a batch, the counts that best fit Eq. (5) with `auxiliary` labelled images, else the rounded
    Eq. (3) with its mean softmax estimated on `probes` (random images by default)."""
    if leak.num_images == 1:
        return torch.tensor([idlg_label(leak)])
    return counts_to_labels(label_candidates(leak, limit=1, probes=probes, auxiliary=auxiliary)[0])
