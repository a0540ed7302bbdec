"""The layer a dishonest server puts in front of the promised model.

    model = MaliciousModel(FrontLayer((1, 28, 28), rows=1024), victim, plan)

Both active attacks of this package ship the same shape (Fowl et al. 2022, Sec. 3; Boenisch et
al. 2023, Sec. 4): the image is flattened to x in R^N, a fully connected layer of k rows and a
ReLU read it, and a second fully connected layer maps the k activations back to an image that the
promised model then classifies:

    h = ReLU(W x + b),   W (k, N), b (k,)                                      # Eq. (1)
    x' = V h + c,        V (N, k), c (N,)                                       # Eq. (2)

The gradient of row i of W for one image is the gradient of its bias times the image,

    dL/dW_i = (dL/dh_i) 1[W_i x + b_i > 0] x = (dL/db_i) x                      # Eq. (3)

so a row that exactly one image of the round switched on gives that image back as
dL/dW_i / dL/db_i, whatever the rest of the model and however many clients were summed. The
inserted layer has 2kN + k + N parameters. `plan` is the server's own note of how it set the rows
(never sent to a client): which rows are bins and in which order, and by how much each was scaled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn

__all__ = ["FrontLayer", "MaliciousModel", "ServerPlan", "inserted_parameters", "PARAMETER_BUDGET"]

PARAMETER_BUDGET = 64_000_000  # the most parameters an inserted layer may hold (256 MB of float32)


def inserted_parameters(rows: int, image_shape: tuple[int, int, int]) -> int:
    """2kN + k + N: the parameters of Eq. (1) and Eq. (2) for k rows over images of N numbers."""
    n = math.prod(image_shape)
    return 2 * rows * n + rows + n


@dataclass(frozen=True, eq=False)
class ServerPlan:
    """What the server wrote into the front layer and needs to read the update back."""

    kind: Literal["imprint", "trap"]
    order: torch.Tensor  # (k,) long: the rows that are bins, by rising threshold (imprint) or all rows (trap)
    scales: torch.Tensor  # (k,) the factor a_i each of those rows was multiplied by (1 unless disguised)
    thresholds: Optional[torch.Tensor] = None  # (k,) imprint: the bin edges t_i the rows' biases sit at
    disguised: bool = False

    @property
    def bins(self) -> int:
        return len(self.order)


class FrontLayer(nn.Module):
    """flatten - linear(k) - ReLU - linear(N) - reshape: Eq. (1) and (2)."""

    def __init__(self, image_shape: tuple[int, int, int], rows: int) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        n = math.prod(image_shape)
        self.rows = nn.Linear(n, rows)  # W, b
        self.back = nn.Linear(rows, n)  # V, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W)
        h = torch.relu(self.rows(x.flatten(1)))  # Eq. (1), (B, k)
        return self.back(h).view(-1, *self.image_shape)  # Eq. (2), (B, C, H, W)


class MaliciousModel(nn.Module):
    """The model a dishonest server ships: its front layer, then the promised (victim) model."""

    def __init__(self, front: FrontLayer, victim: nn.Module, plan: ServerPlan) -> None:
        super().__init__()
        self.front = front
        self.victim = victim
        self.plan = plan  # the server's note; not a parameter, never part of an update

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W)
        return self.victim(self.front(x))  # (B, num_classes)
