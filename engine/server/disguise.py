"""An adaptive server: the same imprint, dressed to pass the client's checks (vetting.py).

    hidden = disguise(imprinted, public_images)   # passes identical_rows, sorted_biases, rarely_active

The server knows the checks, so it changes what they look at and nothing the attack needs:

1. each bin row i gets its own positive factor a_i, and its column of the second layer 1/a_i:
   h_i -> a_i h_i, V_i -> V_i / a_i leaves x' = V h + c, and the readout multiplies row i's
   gradients by a_i again (dL/dW_i -> dL/dW_i / a_i)                                 # Eq. (10)
2. each row gets noise n_i on the pixels that are dark in every public image (and their neighbours): <n_i, x> = 0 for
   images like those, so every row still measures m(x), but no two rows are parallel any more;
3. the rows are shuffled, so the biases no longer fall in order (the server keeps the order);
4. always-on decoy rows (weights only on the dark pixels, a positive bias) get random columns in
   the second layer, so its rows are no longer parallel either; the constant they add to x' is
   taken off its bias.

The architecture check stays: a server can only hide in a layer the client was promised. Here the
promise is the layer itself (the server announced "a learned input layer"), the situation of a
client that has no reference to hold the weights to. Local DP does not care how well the trick is
hidden: the noise the client adds itself covers every image alike.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .front import FrontLayer, MaliciousModel, ServerPlan

__all__ = ["disguise", "dark_pixels"]


def dark_pixels(public: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the numbers that are 0 in every public image (M, C, H, W) and so are all their
    neighbours (a margin: a private image may reach one pixel further than the public ones did)."""
    dark = (public.amax(0) <= 0).float()  # (C, H, W)
    eroded = -nn.functional.max_pool2d(-dark[None], 3, stride=1, padding=1)[0]  # (C, H, W)
    return (eroded > 0.5).flatten()


def disguise(model: MaliciousModel, public: torch.Tensor, decoys: int = 0, seed: int = 0) -> MaliciousModel:
    """The imprinted `model` dressed as above; `decoys` always-on rows (0: a quarter of the bins)."""
    if model.plan.kind != "imprint" or model.plan.disguised:
        raise ValueError("disguise dresses a plain imprinted model (leak.server=imprint)")
    dark = dark_pixels(public.cpu())
    if int(dark.sum()) < 8:
        raise ValueError("this disguise hides noise in pixels that are dark in every public image; these images have "
                         f"{int(dark.sum())} such pixels (faces have none): it cannot hide here")
    g = torch.Generator().manual_seed(seed)
    front, plan = model.front, model.plan
    k, n = front.rows.weight.shape
    d = decoys or max(16, k // 4)
    w, b = front.rows.weight.detach().cpu(), front.rows.bias.detach().cpu()
    v, c = front.back.weight.detach().cpu(), front.back.bias.detach().cpu()
    a = torch.exp(torch.empty(k).uniform_(math.log(0.5), math.log(2.0), generator=g))  # Eq. (10)
    row_norm = float(w[0].norm())

    def on_dark(rows: int, norm: float) -> torch.Tensor:
        noise = torch.randn(rows, n, generator=g) * dark
        return noise / noise.norm(dim=1, keepdim=True) * norm

    rows_w = torch.cat([a[:, None] * (w + on_dark(k, 3 * row_norm)), on_dark(d, row_norm)])  # (k + d, N)
    decoy_on = torch.full((d,), float(b.abs().max()))  # decoys are on for every image without dark pixels
    rows_b = torch.cat([a * b, decoy_on])  # (k + d,)
    imprint_part = float((v / a).norm(dim=1).mean())  # the norm of each back row over the bin columns
    decoy_cols = torch.randn(n, d, generator=g)
    decoy_cols *= 3 * imprint_part / decoy_cols.norm(dim=1, keepdim=True)
    back_w = torch.cat([v / a, decoy_cols], dim=1)  # (N, k + d)
    back_b = c - decoy_cols @ decoy_on  # the decoys' constant taken off
    shuffle = torch.randperm(k + d, generator=g)  # row shuffle[p] of the unshuffled layer sits at p
    position = torch.argsort(shuffle)  # where row r went
    hidden = FrontLayer(front.image_shape, k + d)
    with torch.no_grad():
        hidden.rows.weight.copy_(rows_w[shuffle])
        hidden.rows.bias.copy_(rows_b[shuffle])
        hidden.back.weight.copy_(back_w[:, shuffle])
        hidden.back.bias.copy_(back_b)
    order = position[plan.order]  # the bins by rising threshold, where they now sit
    new_plan = ServerPlan("imprint", order, a[plan.order], plan.thresholds, disguised=True)
    device = next(model.parameters()).device
    return MaliciousModel(hidden.to(device), model.victim, new_plan)
