"""One experiment from one `Config`: the protocol as a script.

    setup = prepare(config)          # clients pick their batches, the server's model, the leak
    attack = make_attack(config)     # the attacker's preset and knobs
    for step in attack.steps(setup.leak, setup.attacker_labels): ...
    result = finish(setup, step)     # scored against the truth the attacker never saw

`run` does all of it; the CLI, the app and the tests call the same functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from .attacks import Attack, AttackStep, create_attack
from .labels import Auxiliary
from .config import Config
from .data import (
    Batch, ImageSet, class_histogram, client_shares, load_dataset, sample_client_batches, select_batch, to_model_input,
)
from .data.bundled import BUNDLED
from .device import resolve_device, set_threads
from .leakage import Leak, leak_update
from .metrics import Evaluation, closer_to_victim, evaluate
from .models import create_model, train_model
from .priors import PRIORS, DiffusionPrior, Prior, load_diffusion, load_prior, nearest_training_images

__all__ = ["Setup", "Result", "prepare", "make_attack", "auxiliary_images", "prior_name", "prior_check", "finish", "run", "model_input_shape"]


def model_input_shape(dataset: str) -> tuple[int, int]:
    """(channels, size) the victim models take for a data set: colour CIFAR at 32, the rest grey 28."""
    return (3, 32) if dataset == "cifar10" else (1, 28)


@dataclass(frozen=True, eq=False)
class Setup:
    """Everything that exists before the attack starts: the clients' batches, the model, the leak."""

    config: Config
    dataset: ImageSet
    clients: tuple[Batch, ...]
    model: nn.Module
    leak: Leak
    device: torch.device

    @property
    def images(self) -> torch.Tensor:
        """All clients' images in client order, (n, C, H, W), as the model took them."""
        channels, size = model_input_shape(self.config.data.dataset)
        return to_model_input(torch.cat([b.images for b in self.clients]), channels, size)

    @property
    def labels(self) -> torch.Tensor:
        """All clients' labels, (n,)."""
        return torch.cat([b.labels for b in self.clients])

    def share_histograms(self) -> torch.Tensor:
        """(clients, classes) counts of the images each client holds (its whole share of the data
        set, which its batch was drawn from), split exactly as `prepare` split them."""
        d = self.config.data
        shares = client_shares(self.dataset, d.clients, d.split, d.alpha, self.config.seed, d.classes, d.shards_per_client)
        return class_histogram(self.dataset.labels, shares, self.dataset.num_classes)

    @property
    def attacker_labels(self) -> Optional[torch.Tensor]:
        """The labels handed to the attacker only under the 'true labels' threat model."""
        return self.labels if self.config.attack.labels == "true" else None


@dataclass(frozen=True, eq=False)
class Result:
    """A finished attack, scored."""

    evaluation: Evaluation
    reconstruction: torch.Tensor  # (n, C, H, W), matched to the originals' order
    labels: torch.Tensor  # (n,) labels the attacker ended with
    originals: torch.Tensor  # (n, C, H, W)
    true_labels: torch.Tensor  # (n,)
    seconds: float  # wall time of the attack itself
    iterations: int
    reason: str
    spread: Optional[torch.Tensor] = None  # (n, C, H, W) per-pixel spread over posterior samples (vae_prior)

    def metrics(self) -> dict:
        """What `metrics.json` holds."""
        return {
            "psnr": self.evaluation.psnr,
            "ssim": self.evaluation.ssim,
            "mse": self.evaluation.mse,
            "label_accuracy": self.evaluation.label_accuracy,
            "seconds": self.seconds,
            "iterations": self.iterations,
            "per_image_psnr": list(self.evaluation.per_image_psnr),
            "reason": self.reason,
        }


def prepare(config: Config, dataset: Optional[ImageSet] = None) -> Setup:
    """Clients draw their batches, the server builds (and optionally pre-trains) its model, and
    one round of FedSGD or FedAvg produces the leak, through the config's defence if it has one."""
    set_threads(config.threads)
    if config.leak.round > 0:  # the server's view of one round of a federated run
        from .federation.views import round_setup  # here: Flower loads only when a run is attacked

        return round_setup(config)
    device = resolve_device(config.device)
    data = config.data
    if dataset is None:
        dataset = load_dataset(data.dataset, "test", root=data.root, download=data.download)
    if data.indices is not None or data.clients == 1:
        clients = [
            select_batch(dataset, data.batch_size, config.seed, data.indices, data.classes, data.unique_labels)
        ]
    else:
        clients = sample_client_batches(
            dataset, data.clients, data.batch_size, data.split, data.alpha, config.seed, data.classes,
            data.shards_per_client,
        )
    channels, size = model_input_shape(data.dataset)
    model = create_model(config.model.name, channels, size, dataset.num_classes, config.model.width, config.seed, device)
    if config.model.train_steps > 0:
        train = load_dataset(data.dataset, "train", root=data.root, download=data.download)
        train_model(
            model, to_model_input(train.images, channels, size).to(device), train.labels.to(device),
            config.model.train_steps, config.model.train_lr, seed=config.seed,
        )
    batches = [(to_model_input(b.images, channels, size).to(device), b.labels.to(device)) for b in clients]
    exact = {}  # the secure sum's fixed point: a dishonest server's layer needs 24 fractional bits
    if config.leak.server != "honest" or config.leak.vet:  # a dishonest server's model; the clients' checks
        from .server import serve

        model = serve(config, model, dataset, clients, batches)  # ModelRefused when a client refuses it
        exact = {"frac_bits": 24} if config.leak.server != "honest" else {}
    local = (config.leak.protocol, config.leak.local_steps, config.leak.local_lr, config.leak.local_batch_size)
    leak = leak_update(model, batches, *local)
    if config.defence.active:  # the server sees the defended aggregate instead
        from .defences import defended_round, with_update  # here: Opacus and the crypto load only when needed

        generator = torch.Generator().manual_seed(config.seed)
        leak = with_update(leak, defended_round(model, batches, config.defence, *local, generator=generator, **exact))
    _check_finite(leak)
    return Setup(config, dataset, tuple(clients), model, leak, device)


def _check_finite(leak: Leak) -> None:
    """Raise ValueError when the update the server saw holds inf or nan (no attack can read it)."""
    for name, u in leak.update.items():
        if not bool(torch.isfinite(u).all()):
            raise ValueError(f"the leaked update is not finite (inf or nan in {name}): a learning rate, a trap scale "
                             "or the noise is too large for float32; lower it")


def auxiliary_images(config: Config) -> Optional[Auxiliary]:
    """The labelled images of the same kind the attacker holds (threat model `attack.auxiliary`), to
    read the labels with and for the class_mean start: the first N images of the data set's train
    part, so none of the victims, who come from the test part. None when N is 0, when they would
    serve nothing (labels given or joint, no class_mean start), or when the data set has no train
    part (the 100 faces)."""
    a, data = config.attack, config.data
    wanted = a.labels == "recovered" or a.init == "class_mean"
    if a.auxiliary == 0 or not wanted or "train" not in BUNDLED.get(data.dataset, ("train",)):
        return None
    train = load_dataset(data.dataset, "train", root=data.root, download=data.download)
    channels, size = model_input_shape(data.dataset)
    return to_model_input(train.images[: a.auxiliary], channels, size), train.labels[: a.auxiliary]


def make_attack(
    config: Config, prior: Optional[Prior] = None, diffusion: Optional[DiffusionPrior] = None, **overrides
) -> Attack:
    """The attack the config names, with its knobs; `overrides` set any other settings field.
    `prior`: an already loaded image prior for `vae_prior` and `diffusion_prior` (else it is loaded
    from assets/), `diffusion`: the latter's denoiser, likewise. The attacker's labelled images
    (`auxiliary_images`) come along when the config grants them."""
    a = config.attack
    if a.name in ("imprint", "trap"):  # one shot: read the dishonest server's own layer
        from .server import create_server_attack

        return create_server_attack(a.name)
    auxiliary = auxiliary_images(config)
    knobs = dict(iterations=a.iterations, restarts=a.restarts, labels=a.labels, time_limit=a.time_limit, seed=config.seed)
    if a.lr is not None:
        knobs["lr"] = a.lr
    if a.distance is not None:
        knobs["distance"] = a.distance
    if a.name == "diffusion_prior":
        knobs.update({key: getattr(a, key) for key in ("refine", "sigma_g", "sampler_steps", "rounds", "start")
                      if getattr(a, key) is not None})
        name = prior_name(config)
        return create_attack(
            a.name, prior=prior or load_prior(name), auxiliary=auxiliary,
            diffusion=diffusion or load_diffusion(name), **{**knobs, **overrides},
        )
    if a.name == "vae_prior":
        knobs.update({key: getattr(a, key) for key in ("tv", "refine", "sigma_g") if getattr(a, key) is not None})
        return create_attack(
            a.name, prior=prior or load_prior(prior_name(config)), auxiliary=auxiliary, **{**knobs, **overrides}
        )
    if a.tv is not None:
        knobs["regularisers"] = (("tv", a.tv),) if a.tv > 0 else ()
    if a.init is not None:
        knobs["init"] = a.init
    return create_attack(a.name, auxiliary=auxiliary, **{**knobs, **overrides})


def prior_name(config: Config) -> str:
    """The image prior a prior attack uses: the configured one, or the one trained on the data set."""
    if config.attack.prior is not None:
        return config.attack.prior
    if config.data.dataset not in PRIORS:
        raise ValueError(
            f"no image prior is trained on {config.data.dataset} (the 100 faces are too few to train one); "
            f"set attack.prior to one of {', '.join(PRIORS)} to watch a prior of the wrong data at work"
        )
    return config.data.dataset


def finish(setup: Setup, step: AttackStep) -> Result:
    """Score the attack's last step against the truth."""
    labels = step.labels if step.labels.dim() == 1 else step.labels.argmax(dim=1)
    originals = setup.images.cpu()
    scored = None if bool((labels < 0).any()) else labels.cpu()  # -1: the attack does not read labels
    evaluation = evaluate(step.images.cpu(), originals, scored, setup.labels.cpu())
    order = torch.tensor(evaluation.order)
    spread = None if step.spread is None else step.spread.cpu()[order]
    return Result(
        evaluation, step.images.cpu()[order], labels.cpu()[order], originals, setup.labels.cpu(),
        step.seconds, step.iteration, step.reason, spread,
    )


def prior_check(setup: Setup, result: Result) -> dict:
    """Plausible is not leaked: each reconstruction's nearest image in the shipped sample of the
    prior's training set, and the share of reconstructions nearer their victim than that image."""
    training = load_dataset(prior_name(setup.config), "train").images  # (M, C, H, W), bundled sample
    if training.shape[1:] != result.reconstruction.shape[1:]:
        raise ValueError("the prior's training images and the reconstructions differ in shape")
    index, distance = nearest_training_images(result.reconstruction, training)
    closer = closer_to_victim(result.reconstruction, result.originals, training)
    return {
        "prior": prior_name(setup.config),
        "closer_to_victim": float(closer.float().mean()),  # share nearer their victim than any training image
        "nearest_training_mse": float(distance.mean()),
        "nearest": training[index],  # (n, C, H, W), the nearest training image of each reconstruction
    }


def run(config: Config, on_step: Optional[Callable[[AttackStep], None]] = None) -> Result:
    """Prepare, attack to the end (calling `on_step` for every step), score."""
    setup = prepare(config)
    step = None
    for step in make_attack(config).steps(setup.leak, setup.attacker_labels):
        if on_step is not None:
            on_step(step)
    assert step is not None
    return finish(setup, step)
