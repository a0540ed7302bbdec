"""The original DLG loop written plainly, as in the paper's notebook (Zhu, Liu & Han 2019).

LeNet with sigmoids, dummy images and dummy label logits from N(0, 1), torch.optim.LBFGS with its
defaults (lr 1, 20 inner evaluations per step), soft cross-entropy against softmax(dummy label),
and the squared gradient distance, differentiated by a double backward. One attack at a time.
This is the baseline `dlg_speed.py` measures our engine against; it is not used by the lab.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

import torch
from torch import nn


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The notebook's cross_entropy_for_onehot: mean over the batch of -sum target log softmax."""
    return torch.mean(torch.sum(-target * torch.log_softmax(logits, dim=-1), 1))


def plain_dlg(
    model: nn.Module,
    leaked: list[torch.Tensor],  # the batch-mean gradient, one tensor per parameter
    batch_size: int,
    image_shape: tuple[int, int, int],
    num_classes: int = 10,
    seed: int = 0,
) -> Iterator[tuple[float, torch.Tensor]]:
    """Yield (seconds so far, dummy images) after every L-BFGS step, forever; the caller stops it."""
    torch.manual_seed(seed)
    dummy_data = torch.randn((batch_size, *image_shape)).requires_grad_(True)
    dummy_label = torch.randn((batch_size, num_classes)).requires_grad_(True)
    optimizer = torch.optim.LBFGS([dummy_data, dummy_label])
    params = list(model.parameters())

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        dummy_loss = soft_cross_entropy(model(dummy_data), torch.softmax(dummy_label, dim=-1))
        dummy_dy_dx = torch.autograd.grad(dummy_loss, params, create_graph=True)
        grad_diff = sum(((gx - gy) ** 2).sum() for gx, gy in zip(dummy_dy_dx, leaked))
        grad_diff.backward()
        return grad_diff

    start = time.perf_counter()
    while True:
        optimizer.step(closure)
        yield time.perf_counter() - start, dummy_data.detach()
