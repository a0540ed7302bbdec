"""How close is a reconstruction to the images that leaked? Pure functions, one return type each.

Images are (B, C, H, W) in [0, 1]. A gradient reveals a batch with no order, so a reconstructed
batch is first matched to the originals (Hungarian assignment on MSE) and then scored pair by pair.

References:
    PSNR: 10 log10(R^2 / MSE), R the data range (e.g. Gonzalez & Woods, Digital Image Processing).
    SSIM: Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from error
          visibility to structural similarity", IEEE TIP 13(4), 2004.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence, Union

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

PSNR_CAP_DB = 100.0  # psnr of identical images; 100 dB = RMS error 1e-5 of the range, far below 8-bit steps

Labels = Union[Tensor, Sequence[int]]


def _check_pair(x: Tensor, ref: Tensor) -> None:
    """Raise ValueError unless x and ref are image batches of the same (B, C, H, W) shape."""
    if x.shape != ref.shape or x.dim() != 4:
        shapes = f"{tuple(x.shape)} and {tuple(ref.shape)}"
        raise ValueError(f"expected two image batches of the same shape (B, C, H, W), got {shapes}")


def mse(x: Tensor, ref: Tensor) -> Tensor:
    """Mean squared error per image: (1/CHW) sum (x - ref)^2. Returns (B,)."""
    _check_pair(x, ref)
    return (x - ref).pow(2).flatten(1).mean(dim=1)  # (B,)


def psnr(x: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image in dB: 10 log10(R^2 / MSE). Returns (B,).

    Identical images would give +inf; the MSE is floored so that the result is at most
    `PSNR_CAP_DB` (100 dB), which keeps batch means finite and JSON-safe.
    """
    floor = data_range**2 * 10 ** (-PSNR_CAP_DB / 10)
    return 10 * torch.log10(data_range**2 / mse(x, ref).clamp_min(floor))  # (B,)


def ssim(x: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity per image (Wang et al. 2004, Eq. 13), Gaussian window 11, sigma 1.5. Returns (B,).

    SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),
    averaged over windows, with C1 = (0.01 R)^2 and C2 = (0.03 R)^2; 1 means identical.
    """
    _check_pair(x, ref)
    return structural_similarity_index_measure(x, ref, data_range=data_range, reduction="none")  # (B,)


def match(recon: Tensor, originals: Tensor) -> Tensor:
    """Order (B,) long such that recon[order[i]] is the reconstruction matched to originals[i].

    Minimises the total MSE over all one-to-one pairings (linear_sum_assignment, Hungarian method).
    """
    _check_pair(recon, originals)
    o, r = originals.detach().flatten(1).double(), recon.detach().flatten(1).double()  # (B, D)
    cost = torch.cdist(o, r).pow(2) / o.shape[1]  # (B, B): cost[i, j] = mse(originals[i], recon[j])
    _, cols = linear_sum_assignment(cost.cpu().numpy())  # rows come back as 0..B-1
    return torch.as_tensor(cols, dtype=torch.long)  # (B,)


def label_accuracy(predicted: Labels, true: Labels) -> float:
    """Fraction of true labels recovered, order-free: |multiset(predicted) & multiset(true)| / B.

    Labels read off a gradient come with no order, so [1, 1, 2] vs [1, 2, 2] scores 2/3.
    """
    true_counts = Counter(int(t) for t in true)
    if not true_counts:
        raise ValueError("label_accuracy needs at least one true label")
    overlap = Counter(int(p) for p in predicted) & true_counts
    return sum(overlap.values()) / sum(true_counts.values())


@dataclass(frozen=True)
class Evaluation:
    """Scores of one reconstructed batch against the originals, after matching."""

    psnr: float  # mean over matched pairs, dB
    ssim: float  # mean over matched pairs
    mse: float  # mean over matched pairs
    label_accuracy: Optional[float]  # None when labels were not given
    per_image_psnr: tuple[float, ...]  # dB, in the order of the originals
    order: tuple[int, ...]  # recon[order[i]] is matched to originals[i]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def evaluate(
    recon: Tensor,
    originals: Tensor,
    predicted_labels: Optional[Labels] = None,
    true_labels: Optional[Labels] = None,
) -> Evaluation:
    """Match `recon` to `originals`, then score each pair; labels are scored only when both are given.

    The reconstruction is clipped to [0, 1] first: it is judged as the image it would be shown as.
    """
    _check_pair(recon, originals)
    originals = originals.detach().float()
    recon = torch.nan_to_num(recon.detach().float(), nan=0.5).clamp(0, 1)  # a diverged pixel counts as grey
    order = match(recon, originals)  # (B,)
    matched = recon[order.to(recon.device)]  # (B, C, H, W)
    per_image = psnr(matched, originals)  # (B,)
    both = predicted_labels is not None and true_labels is not None
    labels = label_accuracy(predicted_labels, true_labels) if both else None  # type: ignore[arg-type]
    return Evaluation(
        psnr=per_image.mean().item(),
        ssim=ssim(matched, originals).mean().item(),
        mse=mse(matched, originals).mean().item(),
        label_accuracy=labels,
        per_image_psnr=tuple(per_image.tolist()),
        order=tuple(order.tolist()),
    )


def closer_to_victim(recon: Tensor, victims: Tensor, training: Tensor) -> Tensor:
    """Plausible is not leaked: for each reconstruction (B, C, H, W), True where it is nearer (mean
    squared pixel distance) to its own victim image than to every image of `training` (M, C, H, W),
    a sample of the image prior's training set. False means it looks more like a typical training
    image than like the private one: the prior may have made it up. Returns (B,) bool."""
    from .priors import nearest_training_images  # the priors package is only needed for this check

    _check_pair(recon, victims)
    own = mse(recon.float(), victims.float())  # (B,)
    _, nearest = nearest_training_images(recon.float(), training.float())  # (B,)
    return own < nearest
