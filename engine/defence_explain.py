"""What a defence did to one round, in numbers a page can draw (the app's Defences page).

    rows = layer_changes(clean.leak.update, defended.leak.update)   # per-layer norms, before and after
    walk = secure_walkthrough(setup)                                  # Bonawitz et al. 2017, on this leak
    walk.masked[u]   # the first entries the server saw from client u: uniform noise on the ring
    walk.total       # their unmasked sum: the plain aggregate, within the quantisation step

It reads an `engine.experiment.Setup`, so it sits above the experiment, not inside `engine.defences`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data import to_model_input
from .defences.secure_aggregation import RING_BITS, flatten, secure_sum, unflatten
from .experiment import Setup, model_input_shape
from .leakage import Params, client_update, model_parameters

__all__ = ["LayerChange", "layer_changes", "update_cosine", "SecureWalkthrough", "secure_walkthrough", "RECORDED_NOISE"]


@dataclass(frozen=True)
class LayerChange:
    """One parameter tensor of the update, before and after the defence."""

    layer: str
    clean_norm: float  # ||u||_2 of the undefended update
    defended_norm: float  # ||u'||_2 of what the server sees under the defence
    cosine: float  # cos(u, u'): 1 = same direction, about 0 = drowned


def update_cosine(clean: Params, defended: Params) -> float:
    """cos(u, u') over the whole update (all tensors as one vector)."""
    u, v = flatten(clean), flatten(defended).to(flatten(clean).device)
    return float(torch.nn.functional.cosine_similarity(u, v, dim=0, eps=1e-12))


def layer_changes(clean: Params, defended: Params) -> list[LayerChange]:
    """Per tensor: the norms of the clean and the defended update and the cosine between them."""
    rows = []
    for name, u in clean.items():
        v = defended[name].to(u.device)
        cos = torch.nn.functional.cosine_similarity(u.flatten(), v.flatten(), dim=0, eps=1e-12)
        rows.append(LayerChange(name, float(u.norm()), float(v.norm()), float(cos)))
    return rows


@dataclass(frozen=True, eq=False)
class SecureWalkthrough:
    """One secure-aggregation round over a leak's clients, and what each party could see."""

    plain: np.ndarray  # (n, k) the first k entries of each client's weighted message
    masked: np.ndarray  # (n, k) the same entries of y_u as the server got them, read as a share of the ring in [-1, 1)
    plain_total: np.ndarray  # (k,) the first entries of the plain sum
    total: np.ndarray  # (k,) the first entries of the unmasked secure sum
    max_error: float  # max |secure sum - plain sum| over all m entries
    step: float  # the fixed-point step 2^-f; the error stays below n * step / 2
    bytes_per_client: float
    plain_bytes: int
    aggregate: Params  # the secure sum cut back into the update's tensors: what the server ends with
    survivors: tuple[int, ...]  # whose messages are in the sum

    @property
    def sums(self) -> np.ndarray:
        """(2, k): the plain sum's first entries over the secure sum's."""
        return np.stack([self.plain_total, self.total])


def client_messages(setup: Setup) -> list[Params]:
    """Each client's message (mean gradient or weight change), weighted n_k / n as the aggregate weights it."""
    cfg, leak = setup.config, setup.config.leak
    channels, size = model_input_shape(cfg.data.dataset)
    params = model_parameters(setup.model)
    total = sum(len(b.labels) for b in setup.clients)
    out = []
    for batch in setup.clients:
        images = to_model_input(batch.images, channels, size).to(setup.device)
        message = client_update(setup.model, params, images, batch.labels.to(setup.device), leak.protocol,
                                leak.local_steps, leak.local_lr, leak.local_batch_size)
        out.append({name: (len(batch.labels) / total) * m.detach() for name, m in message.items()})
    return out


def secure_walkthrough(setup: Setup, first: int = 32, frac_bits: int = 16, drop_out: bool = False) -> SecureWalkthrough:
    """Run Bonawitz et al.'s protocol on the setup's clients' messages. With `drop_out` the last client
    vanishes after sharing its keys (threshold n - 1): the server rebuilds its masks from the others'
    Shamir shares, and the sum is the survivors' (its row of `masked` is then all zero: nothing came)."""
    messages = client_messages(setup)
    n = len(messages)
    if n < 2 + int(drop_out):
        raise ValueError(f"secure aggregation {'with a dropout ' if drop_out else ''}needs at least "
                         f"{2 + int(drop_out)} clients; choose more clients")
    vectors = [flatten(m).cpu() for m in messages]  # (m,) each
    dropped = {n - 1} if drop_out else set()
    result = secure_sum(vectors, threshold=n - len(dropped), drop_before_input=dropped, frac_bits=frac_bits)
    plain_total = torch.stack([vectors[u] for u in result.survivors]).sum(0)
    masked = np.zeros((n, first), dtype=np.int64)
    for u in result.survivors:
        masked[u] = result.masked[u][:first]
    masked[masked >= 2 ** (RING_BITS - 1)] -= 2**RING_BITS  # signed reading, then a share of 2^31
    return SecureWalkthrough(
        plain=torch.stack(vectors)[:, :first].numpy(),
        masked=masked / 2.0 ** (RING_BITS - 1),
        plain_total=plain_total[:first].numpy(),
        total=result.total[:first].numpy(),
        max_error=float((result.total - plain_total).abs().max()),
        step=result.step,
        bytes_per_client=result.bytes_per_client,
        plain_bytes=result.plain_bytes,
        aggregate=unflatten(result.total.to(setup.device), messages[0]),
        survivors=result.survivors,
    )


# The figures README.md's Defences section reports from one run of `python bench/defences.py` (2-core CPU,
# DLG on the default digit, seed 0, 300 iterations; accuracy after 5 clients x 10 rounds of FedAvg), kept
# here so the app can show them without the minutes they take. Rows: (noise multiplier, clip C, PSNR dB,
# epsilon of the leaked round, test accuracy, epsilon of the training run).
RECORDED_NOISE = (
    (0.0, 1.0, 62.9, None, 0.626, None),
    (1e-3, 1.0, 7.6, 5.5e5, 0.282, 2.75e7),
    (1e-2, 1.0, 3.5, 5.54e3, 0.288, 2.73e5),
    (1e-1, 1.0, 3.0, 74.1, 0.304, 1.05e3),
    (1.0, 1.0, 3.3, 0.671, 0.296, 2.22),
    (0.0, 10.0, 62.9, None, 0.626, None),
    (1e-3, 10.0, 11.3, 5.5e5, 0.650, 2.75e7),
    (1e-2, 10.0, 3.4, 5.54e3, 0.646, 2.73e5),
    (1e-1, 10.0, 3.2, 74.1, 0.698, 1.05e3),
    (1.0, 10.0, 3.2, 0.671, 0.096, 2.22),
)
