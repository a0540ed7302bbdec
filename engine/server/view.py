"""What a page or a report shows of a round with a dishonest server.

    shown = dishonest_round(config)          # the round, scored, with each image's fate
    verdicts = client_verdicts(shown.setup)  # each client's vetting of the model it received
    rows = row_pictures(model, 8)            # the first layer's rows as images

Only bookkeeping on top of prepare / make_attack / finish: the truth the attacker never sees
(which bin each private image fell in) is used to say why an image did or did not come back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..config import Config, with_overrides
from .front import MaliciousModel, inserted_parameters
from .imprint import expected_exact
from .ship import EXACT_DB, promise
from .vetting import Vetting, vet_clients

__all__ = ["DishonestRound", "dishonest_round", "client_verdicts", "row_pictures", "layer_sizes", "imprint_bins",
           "front_parameters", "row_thresholds"]


@dataclass(frozen=True, eq=False)
class DishonestRound:
    """A finished round: the engine's setup and result, and per private image what happened to it."""

    setup: object  # engine.experiment.Setup
    result: object  # engine.experiment.Result
    exact: tuple[bool, ...]  # (B,) came back above 60 dB
    shared: tuple[bool, ...]  # (B,) shared its bin (imprint) / no row caught it alone (trap): a collision
    expected: Optional[float]  # Eq. (7) for an imprint; None for a trap
    rows_used: int

    @property
    def exact_count(self) -> int:
        return sum(self.exact)


def imprint_bins(model: MaliciousModel, images: torch.Tensor) -> torch.Tensor:
    """The bin each image (B, C, H, W) falls in, by the server's thresholds: (B,) long."""
    m = images.flatten(1).double().mean(1).cpu()  # the measurement, mean brightness
    return torch.bucketize(m, model.plan.thresholds.double().cpu(), right=True) - 1


def _alone(model: MaliciousModel, images: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the image was alone in its bin (imprint) or alone in at least one row (trap)."""
    if model.plan.kind == "imprint":
        bins = imprint_bins(model, images)
        return (bins[:, None] == bins[None, :]).sum(1) == 1
    with torch.no_grad():
        on = model.front.rows(images.flatten(1).to(model.front.rows.weight.device)).cpu() > 0  # (B, k)
    return on[:, on.sum(0) == 1].any(1)


def dishonest_round(config: Config) -> DishonestRound:
    """Run the round the config describes (without the clients' vetting), attack it, score it."""
    from ..experiment import finish, make_attack, prepare

    config = with_overrides(config, ["leak.vet=false"])
    setup = prepare(config)
    step = list(make_attack(config).steps(setup.leak, setup.attacker_labels))[-1]
    result = finish(setup, step)
    exact = tuple(p > EXACT_DB for p in result.evaluation.per_image_psnr)
    model = setup.model
    if not isinstance(model, MaliciousModel):
        return DishonestRound(setup, result, exact, tuple(False for _ in exact), None, 0)
    alone = _alone(model, setup.images)
    b = setup.leak.num_images
    expected = expected_exact(b, model.plan.bins) if model.plan.kind == "imprint" else None
    from .attack import READERS

    rows_used = min(b, len(READERS[model.plan.kind](setup.leak)))  # the same readout the attack made
    return DishonestRound(setup, result, exact, tuple(bool(not a) for a in alone), expected, rows_used)


def client_verdicts(setup) -> list[Vetting]:
    """Each client's vetting of the model it received, on its own images (engine.server.vetting)."""
    from ..experiment import model_input_shape
    from ..data import to_model_input
    from ..models import create_model

    config = setup.config
    channels, size = model_input_shape(config.data.dataset)
    victim = create_model(config.model.name, channels, size, setup.dataset.num_classes, config.model.width, config.seed)
    promised = promise(config, victim, setup.model)
    return vet_clients(setup.model, promised, [to_model_input(b.images, channels, size) for b in setup.clients])


def row_pictures(model: nn.Module, count: int = 8) -> tuple[torch.Tensor, list[int]]:
    """`count` rows (filters) of the model's first weight, evenly spaced over its rows, as images in
    [0, 1]: mid grey is 0, light grey the row's largest positive entry, dark its most negative (a flat
    positive row is a light grey square). Returns ((count, C, h, w), the rows' indices)."""
    weight = next(p for p in model.parameters() if p.dim() >= 2).detach().cpu()
    index = torch.linspace(0, len(weight) - 1, min(count, len(weight))).round().long()
    weight = weight[index]
    if weight.dim() == 2:  # a fully connected row over the flattened image
        shape = model.front.image_shape if isinstance(model, MaliciousModel) else None
        side = int(round(weight.shape[1] ** 0.5))
        weight = weight.view(len(weight), *(shape or (1, side, side)))
    top = weight.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *[1] * (weight.dim() - 1))
    return 0.5 + 0.35 * weight / top, index.tolist()


def row_thresholds(model: nn.Module, rows: list[int]) -> Optional[list[float]]:
    """An imprint's bin edge t_i (mean brightness) for each of `rows`; None for any other model."""
    if not isinstance(model, MaliciousModel) or model.plan.kind != "imprint" or model.plan.disguised:
        return None
    return [float(model.plan.thresholds[i]) for i in rows]


def layer_sizes(model: nn.Module) -> list[tuple[str, str, int]]:
    """(parameter, shape, numbers) for every parameter tensor, in order."""
    return [(name, " x ".join(map(str, p.shape)), p.numel()) for name, p in model.named_parameters()]


def front_parameters(model: nn.Module) -> int:
    """Parameters the server inserted (0 for an honest model)."""
    if not isinstance(model, MaliciousModel):
        return 0
    return inserted_parameters(model.front.rows.out_features, model.front.image_shape)
