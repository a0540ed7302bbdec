"""The round with a dishonest server, as a script: what it ships, what each client checks.

    model = serve(config, victim, dataset, clients, batches)    # the model the clients train on

`leak.server` picks the model: the promised victim (honest), an imprint (imprint.py) or a trap
layer (trap.py) in front of it, optionally disguised (disguise.py). With `leak.vet` every client
vets the model it received (vetting.py) on its own batch before it trains, and a refusal stops
the round: nothing is sent, nothing leaks.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..config import Config
from ..data import Batch, ImageSet, load_dataset, to_model_input
from ..data.bundled import BUNDLED
from .disguise import disguise
from .front import MaliciousModel, inserted_parameters
from .imprint import expected_exact, imprint_model
from .trap import trap_model
from .vetting import Shapes, Vetting, architecture, vet_clients

__all__ = ["ModelRefused", "public_images", "malicious_model", "serve", "server_metrics", "EXACT_DB"]

EXACT_DB = 60.0  # a reconstruction above this PSNR after matching counts as exact
PUBLIC = 1000  # the attacker's images when attack.auxiliary does not say


class ModelRefused(ValueError):
    """A client vetted the server's model and refused to train on it."""


def public_images(config: Config, dataset: ImageSet, clients: Sequence[Batch]) -> torch.Tensor:
    """The attacker's own images (M, C, H, W), never a victim's: the first `attack.auxiliary` (or
    1000) images of the data set's train part; for a set shipped without one (the 100 faces) the
    images of the set that no client holds this round."""
    from ..experiment import model_input_shape

    data = config.data
    channels, size = model_input_shape(data.dataset)
    if "train" in BUNDLED.get(data.dataset, ("train",)):
        train = load_dataset(data.dataset, "train", root=data.root, download=data.download)
        images = train.images[: config.attack.auxiliary or PUBLIC]
    else:
        held = torch.cat([b.indices for b in clients])
        free = torch.ones(len(dataset), dtype=torch.bool)
        free[held] = False
        images = dataset.images[free]
    if len(images) < 2:
        raise ValueError(f"the server needs at least 2 public images of {data.dataset} to set its bins; it has {len(images)}")
    return to_model_input(images, channels, size)


def malicious_model(config: Config, victim: nn.Module, public: torch.Tensor) -> nn.Module:
    """The model `leak.server` names, built around `victim` (the model the clients were promised)."""
    leak, images = config.leak, config.data.batch_size * config.data.clients
    if leak.server == "honest":
        return victim
    device = next(victim.parameters()).device
    if leak.server == "trap":
        return trap_model(victim, tuple(public.shape[1:]), leak.bins, leak.trap_scale, config.seed, images)
    model = imprint_model(victim, public.to(device), leak.bins, images)
    return disguise(model, public, seed=config.seed) if leak.disguise else model


def promise(config: Config, victim: nn.Module, shipped: nn.Module) -> Shapes:
    """What the clients hold the model to: the victim's architecture, or, when the server announced
    its input layer (the disguised imprint), the shipped one."""
    return architecture(shipped if config.leak.disguise else victim)


def refuse_or_accept(shipped: nn.Module, promised: Shapes, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[Vetting]:
    """Every client's verdict, each on its own images; ModelRefused names the first refusal."""
    verdicts = vet_clients(shipped, promised, [images for images, _ in batches])
    refused = [k for k, v in enumerate(verdicts) if v.refused]
    if refused:
        first = verdicts[refused[0]]
        raise ModelRefused(
            f"{len(refused)} of {len(batches)} client(s) refused the server's model, nothing was sent "
            f"(client {refused[0] + 1}: {'; '.join(str(f) for f in first.findings)})"
        )
    return verdicts


def serve(
    config: Config, victim: nn.Module, dataset: ImageSet, clients: Sequence[Batch],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> nn.Module:
    """The model the clients train on this round: built by the server, vetted by each client when
    `leak.vet` is on (ModelRefused if any refuses)."""
    public: Optional[torch.Tensor] = None
    if config.leak.server != "honest":
        public = public_images(config, dataset, clients)
    shipped = victim if public is None else malicious_model(config, victim, public)
    if config.leak.vet:
        refuse_or_accept(shipped, promise(config, victim, shipped), batches)
    return shipped


def server_metrics(config: Config, model: nn.Module, leak, per_image_psnr: Sequence[float]) -> dict:
    """What metrics.json adds for a round with a dishonest server (or vetting clients)."""
    out: dict = {"server": config.leak.server}
    if config.leak.vet:
        out["vetting"] = "accepted by every client"
    if not isinstance(model, MaliciousModel):
        return out
    from .attack import READERS

    readout = READERS[model.plan.kind](leak)
    b, k = leak.num_images, model.plan.bins
    out.update({
        "exact_images": sum(1 for p in per_image_psnr if p > EXACT_DB),  # above 60 dB after matching
        "expected_exact": expected_exact(b, k) if model.plan.kind == "imprint" else None,  # Eq. (7)
        "bins" if model.plan.kind == "imprint" else "rows": k,
        "rows_used": min(b, len(readout)),  # bins (rows) whose image went into the reconstruction
        "inserted_parameters": inserted_parameters(model.front.rows.out_features, model.front.image_shape),
        "disguised": model.plan.disguised,
    })
    if model.plan.kind == "trap":
        out["trap_scale"] = config.leak.trap_scale
    return out
