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
"""

from __future__ import annotations

import heapq
import math
import itertools

import torch
from torch.func import functional_call

from .leakage import Leak

__all__ = ["last_layer", "idlg_label", "estimate_counts", "label_candidates", "counts_to_labels", "recover_labels"]


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


def estimate_counts(leak: Leak, samples: int = 64, seed: int = 0, probes: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. (3) before rounding: a real-valued count per class, (K,)."""
    _, bias = last_layer(leak)
    return leak.num_images * (mean_softmax(leak, samples, seed=seed, probes=probes) - bias.cpu())


def round_counts(estimate: torch.Tensor, total: int) -> torch.Tensor:
    """Integer counts summing to `total`: clip at 0, floor, hand the rest out by largest remainder."""
    clipped = estimate.clamp(min=0)
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
    leak: Leak, limit: int = 4, samples: int = 64, seed: int = 0, probes: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """The `limit` integer count vectors (K,) summing to n most consistent with Eq. (3), most likely
    first. The estimate is least sure for the classes whose softmax moves with the input, so each
    class's squared error is weighed by the inverse of its spread (a Mahalanobis distance with a
    diagonal covariance); a best-first search from the rounded estimate, one move (an image from
    class a to class b) at a time, lists the nearest multisets."""
    estimate = estimate_counts(leak, samples, seed, probes)
    start = round_counts(estimate, leak.num_images)
    variance = (leak.num_images * softmax_spread(leak, samples, seed=seed, probes=probes)) ** 2 + 0.05

    def cost(counts: torch.Tensor) -> float:
        return float(((counts - estimate) ** 2 / variance).sum())

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


def recover_labels(leak: Leak, probes: torch.Tensor | None = None) -> torch.Tensor:
    """The attacker's best single guess of the batch's labels, (n,) sorted: iDLG for one image,
    rounded counts (Eq. 3) for a batch (its mean softmax estimated on `probes` if given)."""
    if leak.num_images == 1:
        return torch.tensor([idlg_label(leak)])
    return counts_to_labels(label_candidates(leak, limit=1, probes=probes)[0])
