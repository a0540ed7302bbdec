"""Experiment configuration: nested frozen dataclasses that round-trip to JSON.

One `Config` describes one run: which images leak (data), through which model (model) and
protocol (leak), what the clients do to their messages first (defence), and which attack
reconstructs them (attack). The loader is generic: it walks
`dataclasses.fields` with their type hints, so a new section is just a new dataclass field.

    cfg = with_overrides(load_config("run.json"), ["data.batch_size=4", "attack.name=ig"])
    assert from_json(to_json(cfg)) == cfg
"""

from __future__ import annotations

import dataclasses
import json
import math
import reprlib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key that the schema does not accept; the message names the dotted key."""


def _show(value: Any) -> str:
    """`repr(value)` cut to one short line: a huge or deeply nested value cannot flood (or overflow) an error."""
    short = reprlib.Repr()  # Python 3.11's Repr takes no keyword arguments
    short.maxlevel, short.maxdict, short.maxlist, short.maxtuple = 3, 4, 8, 8
    short.maxstring, short.maxother, short.maxlong = 60, 60, 40
    return short.repr(value)


def _require(ok: bool, rule: str, value: Any) -> None:
    """Raise `ConfigError(f"{rule}, got {value!r}")` unless `ok`; `rule` starts with the key's name."""
    if not ok:
        raise ConfigError(f"{rule}, got {_show(value)}")


# -----------------------------------------------------------------------------
# sections


MAX_IMAGES = 1024  # images per client batch, and clients: more than any bundled set holds (500)


@dataclass(frozen=True)
class DataConfig:
    dataset: Literal["mnist", "fashion_mnist", "lfw_faces", "cifar10"] = "mnist"
    batch_size: int = 1  # images per client
    clients: int = 1  # clients whose updates the server averages
    split: Literal["iid", "dirichlet", "shards"] = "iid"  # how images are dealt to clients
    alpha: float = 0.5  # Dirichlet concentration (split="dirichlet")
    shards_per_client: int = 2  # label-sorted shards per client (split="shards")
    indices: Optional[tuple[int, ...]] = None  # explicit images (overrides seed choice)
    classes: Optional[tuple[int, ...]] = None  # draw only these classes
    unique_labels: bool = False  # no label repeated within a client batch
    root: Optional[str] = None  # torchvision data root; None = bundled assets
    download: bool = False  # let torchvision download into root

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "batch_size must be >= 1", self.batch_size)
        _require(self.batch_size <= MAX_IMAGES, f"batch_size must be at most {MAX_IMAGES} (the attack solves for "
                 "every image at once: a batch of 500 already takes seconds per iteration)", self.batch_size)
        _require(self.clients >= 1, "clients must be >= 1", self.clients)
        _require(self.clients <= MAX_IMAGES, f"clients must be at most {MAX_IMAGES} (each needs its own images; "
                 "the attack solves for all of them at once)", self.clients)
        _require(self.alpha > 0, "alpha must be > 0", self.alpha)
        _require(self.shards_per_client >= 1, "shards_per_client must be >= 1", self.shards_per_client)
        for key in ("indices", "classes"):
            chosen = getattr(self, key)
            ok = chosen is None or (len(chosen) > 0 and min(chosen) >= 0 and max(chosen) < 2**31)
            _require(ok, f"{key} must be null or a non-empty list of numbers from 0 to 2^31 - 1", chosen)


MAX_LR = 1e3  # SGD learning rates (model training, FedAvg's local steps): torch's SGD overflows far above
MAX_WIDTH = {"lenet": 256, "convnet": 256, "mlp": 4096, "resnet": 128}  # ~3M, 6M, 20M, 5M parameters
MAX_TRAIN_STEPS = 2000  # model training before the leak shows no progress: about a minute of LeNet on a CPU
MAX_LOCAL_STEPS = 100  # FedAvg's E: every attack iteration differentiates through all E local steps
MAX_ITERATIONS = 1_000_000  # attack steps: hours of DLG; with time_limit, a cap that is never met


@dataclass(frozen=True)
class ModelConfig:
    name: Literal["lenet", "convnet", "mlp", "resnet"] = "lenet"
    width: int = 0  # 0 = the architecture's default width
    train_steps: int = 0  # >0: train on the bundled train sample first
    train_lr: float = 0.05  # SGD learning rate for that training

    def __post_init__(self) -> None:
        _require(self.width >= 0, "width must be >= 0", self.width)
        widest = MAX_WIDTH.get(self.name, 256)
        _require(self.width <= widest, f"width must be at most {widest} for {self.name} (wider victims take "
                 "minutes per attack iteration on a CPU, and their memory)", self.width)
        _require(self.train_steps >= 0, "train_steps must be >= 0", self.train_steps)
        _require(self.train_steps <= MAX_TRAIN_STEPS, f"train_steps must be at most {MAX_TRAIN_STEPS} (about a minute "
                 "of LeNet training on a CPU before the leak, with no progress shown)", self.train_steps)
        _require(0 < self.train_lr <= MAX_LR, f"train_lr must be in (0, {MAX_LR:g}] (SGD diverges long before)",
                 self.train_lr)


@dataclass(frozen=True)
class LeakConfig:
    protocol: Literal["fedsgd", "fedavg"] = "fedsgd"  # what the server sees: one gradient, or a weight delta
    local_steps: int = 1  # FedAvg local SGD steps E
    local_lr: float = 0.1  # FedAvg local learning rate
    local_batch_size: int = 0  # 0 = the whole client batch per step
    server: Literal["honest", "imprint", "trap"] = "honest"  # the model the server ships (engine/server)
    bins: int = 1024  # imprint: bins k of the inserted layer; trap: its rows
    trap_scale: float = 1.5  # trap: how much the negative half of each row outweighs the positive
    disguise: bool = False  # imprint: dress the layer to pass the clients' checks (an adaptive server)
    vet: bool = False  # each client checks the model it received and refuses a suspicious one
    round: int = 0  # 0: one round on a fresh model; r >= 1: round r of the `federation` run (engine/federation)
    client: int = -1  # with round >= 1: the client whose reply is attacked; -1 = the round's aggregate

    def __post_init__(self) -> None:
        _require(self.local_steps >= 1, "local_steps must be >= 1", self.local_steps)
        _require(self.local_steps <= MAX_LOCAL_STEPS, f"local_steps must be at most {MAX_LOCAL_STEPS}: every attack "
                 "iteration differentiates through all E local steps (E = 100 already takes seconds per iteration)",
                 self.local_steps)
        _require(0 < self.local_lr <= MAX_LR, f"local_lr must be in (0, {MAX_LR:g}] (SGD diverges long before)",
                 self.local_lr)
        _require(self.local_batch_size >= 0, "local_batch_size must be >= 0", self.local_batch_size)
        _require(self.bins >= 1, "bins must be >= 1", self.bins)
        _require(self.trap_scale > 0, "trap_scale must be > 0", self.trap_scale)
        _require(self.round >= 0, "round must be >= 0 (0: a fresh model, no federated run)", self.round)
        _require(self.client >= -1, "client must be >= -1 (-1: the aggregate)", self.client)
        _require(not self.disguise or self.server == "imprint", "disguise needs server 'imprint'", self.disguise)


@dataclass(frozen=True)
class AttackConfig:
    name: Literal["dlg", "idlg", "ig", "vae_prior", "diffusion_prior", "imprint", "trap"] = "dlg"
    iterations: int = 300  # optimiser steps (gradient evaluations for L-BFGS)
    restarts: int = 1  # independent random initialisations; the best is kept
    labels: Literal["true", "recovered", "joint"] = "recovered"  # given, read off the gradient, or optimised
    auxiliary: int = 1000  # labelled train images of the data set the attacker holds (labels, class_mean); 0 = none
    init: Optional[Literal["grey", "uniform", "normal", "class_mean"]] = None  # dummy start; None = the preset's
    lr: Optional[float] = None  # None = the preset's
    distance: Optional[str] = None  # None = the preset's gradient distance
    tv: Optional[float] = None  # total-variation weight; None = the preset's
    time_limit: float = 0.0  # seconds; 0 = no limit
    prior: Optional[Literal["mnist", "fashion_mnist"]] = None  # vae_prior: the image prior; None = the data set's own
    refine: Optional[int] = None  # vae_prior: pixel steps after the latent phase; None = the preset's
    sigma_g: Optional[float] = None  # vae_prior: width of the gradient likelihood; None = the preset's
    sampler_steps: Optional[int] = None  # diffusion_prior: guided denoising steps per round; None = the preset's
    rounds: Optional[int] = None  # diffusion_prior: rounds of re-noising and guided denoising; None = the preset's
    start: Optional[Literal["vae", "noise"]] = None  # diffusion_prior: chain from the VAE's MAP or pure noise

    def __post_init__(self) -> None:
        _require(self.iterations >= 1, "iterations must be >= 1", self.iterations)
        _require(self.iterations <= MAX_ITERATIONS, f"iterations must be at most {MAX_ITERATIONS:,} (hours of DLG; "
                 "to stop sooner, set time_limit)", self.iterations)
        _require(self.refine is None or self.refine <= MAX_ITERATIONS, f"refine must be null or at most "
                 f"{MAX_ITERATIONS:,}", self.refine)
        _require(self.refine is None or self.refine >= 0, "refine must be null or >= 0", self.refine)
        _require(self.sigma_g is None or 0 < self.sigma_g <= 1e3, "sigma_g must be null or in (0, 1e3] (the prior's "
                 "weight sigma_g^2 / 2 would drown any gradient distance, then overflow)", self.sigma_g)
        _require(self.name not in ("vae_prior", "diffusion_prior") or self.labels != "joint",
                 f"labels must be 'true' or 'recovered' for {self.name} (it draws images, not label logits)", self.labels)
        _require(self.sampler_steps is None or self.sampler_steps >= 1, "sampler_steps must be null or >= 1",
                 self.sampler_steps)
        _require(self.rounds is None or 1 <= self.rounds <= 1000, "rounds must be null or in [1, 1000]", self.rounds)
        _require(self.restarts >= 1, "restarts must be >= 1", self.restarts)
        _require(self.restarts <= 100, "restarts must be at most 100 (each repeats the whole attack)", self.restarts)
        _require(self.auxiliary >= 0, "auxiliary must be >= 0 (0: the attacker holds no labelled images)", self.auxiliary)
        _require(self.init is None or self.name not in ("vae_prior", "diffusion_prior"),
                 f"init is for the pixel attacks (dlg, idlg, ig); {self.name} starts from its prior", self.init)
        _require(self.init != "class_mean" or (self.auxiliary > 0 and self.labels != "joint"),
                 "init 'class_mean' needs auxiliary > 0 and labels 'true' or 'recovered'", self.init)
        _require(self.lr is None or 0 < self.lr <= 1e9, "lr must be null or in (0, 1e9] (a step of 1e6 already "
                 "diverges; torch's optimisers cannot hold much larger ones)", self.lr)
        _require(self.tv is None or self.tv >= 0, "tv must be null or >= 0", self.tv)
        _require(self.time_limit >= 0, "time_limit must be >= 0", self.time_limit)


MIN_NOISE, MAX_NOISE = 1e-8, 1e6  # sigma; Opacus's RDP accountant divides by sigma^2 and squares it
MAX_CLIP = 1e6  # C (or S)


@dataclass(frozen=True)
class DPConfig:
    noise_multiplier: float = 0.0  # sigma (z at client level); 0 = no differential privacy
    clip: float = 1.0  # clipping norm C (example level) or S (client level)
    level: Literal["example", "client"] = "example"  # DP-SGD per image, or DP-FedAvg per client update
    delta: float = 1e-5  # the delta of (epsilon, delta)-DP that epsilon is reported for

    def __post_init__(self) -> None:
        sigma = self.noise_multiplier
        _require(sigma == 0 or MIN_NOISE <= sigma <= MAX_NOISE,
                 f"noise_multiplier must be 0 (no noise) or from {MIN_NOISE:g} to {MAX_NOISE:g}: below, the noise "
                 "hides nothing (epsilon over 1e15), above, the update is long drowned (epsilon at Opacus's floor), "
                 "and outside both the accountant's arithmetic overflows", sigma)
        _require(0 < self.clip <= MAX_CLIP, f"clip must be in (0, {MAX_CLIP:g}] (no update's norm comes near; "
                 "the noise sigma * C must stay a finite float32)", self.clip)
        _require(0 < self.delta < 1, "delta must be in (0, 1)", self.delta)


@dataclass(frozen=True)
class CompressionConfig:
    method: Literal["none", "top_k", "quantise", "sign", "prune"] = "none"  # applied to each client's message
    fraction: float = 0.1  # top_k: share of entries kept; prune: share of entries zeroed
    bits: int = 4  # quantise: bits per entry

    def __post_init__(self) -> None:
        _require(0 < self.fraction < 1, "fraction must be in (0, 1)", self.fraction)
        _require(1 <= self.bits <= 16, "bits must be from 1 to 16", self.bits)


@dataclass(frozen=True)
class DefenceConfig:
    dp: DPConfig = field(default_factory=DPConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    secure_aggregation: bool = False  # the server gets only the sum, via Bonawitz et al.'s protocol

    @property
    def active(self) -> bool:
        """Whether any defence changes what the server sees."""
        return self.dp.noise_multiplier > 0 or self.compression.method != "none" or self.secure_aggregation


@dataclass(frozen=True)
class Spread:
    """A quantity that differs between clients: log-normal around `median` (Shen et al.'s FLASH traces
    and most device studies find latency, bandwidth and speed roughly log-normal)."""

    median: float = 1.0  # the typical client's value
    spread: float = 0.5  # sigma of log(value); 0 = every client the same

    def __post_init__(self) -> None:
        _require(0 < self.median < 1e9, "median must be > 0 and < 1e9", self.median)
        _require(0 <= self.spread <= 3, "spread must be from 0 to 3", self.spread)


@dataclass(frozen=True)
class BandwidthConfig:
    down: Spread = field(default_factory=lambda: Spread(20.0, 0.8))  # Mbit/s, server to client
    up: Spread = field(default_factory=lambda: Spread(5.0, 0.8))  # Mbit/s, client to server


@dataclass(frozen=True)
class PoisonConfig:
    """The malicious clients' knobs (`federation.attack`; rules and papers in engine/federation/poison.py)."""

    scale: float = 10.0  # sign_flip: an attacker sends -scale x its honest update
    sigma: float = 10.0  # gaussian: an attacker sends N(0, sigma^2 I)
    z: Optional[float] = None  # alie: standard deviations below the honest mean; None = z_max from n and f
    epsilon: float = 0.1  # ipm: the attackers send -epsilon x the honest mean (0.1 fools Krum, 10 the mean)
    source: int = 7  # label_flip: the class whose images the attackers relabel
    target: int = 1  # label_flip: the label they get; backdoor: the class the trigger calls for
    share: float = 0.5  # backdoor: share of an attacker's images that carry the trigger
    trigger: int = 4  # backdoor: side in pixels of the white square in the lower right corner
    boost: float = 0.0  # backdoor: gamma, the attacker's update scale; 0 = n / f (model replacement)
    start: int = 1  # the first round the attackers act (model replacement aims at a model that has learnt)

    def __post_init__(self) -> None:
        _require(0 < self.scale <= 1e6, "scale must be in (0, 1e6]", self.scale)
        _require(0 < self.sigma <= 1e6, "sigma must be in (0, 1e6]", self.sigma)
        _require(self.z is None or 0 <= self.z <= 100, "z must be null or from 0 to 100", self.z)
        _require(0 < self.epsilon <= 1e6, "epsilon must be in (0, 1e6]", self.epsilon)
        _require(self.source >= 0 and self.target >= 0, "source and target must be class numbers >= 0",
                 (self.source, self.target))
        _require(0 < self.share <= 1, "share must be in (0, 1]", self.share)
        _require(1 <= self.trigger <= 16, "trigger must be from 1 to 16 pixels", self.trigger)
        _require(0 <= self.boost <= 1e4, "boost must be from 0 to 1e4 (0: n / f)", self.boost)
        _require(self.start >= 1, "start must be a round >= 1", self.start)


@dataclass(frozen=True)
class RobustConfig:
    """The robust aggregators' knobs (`federation.strategy`; engine/federation/robust.py)."""

    byzantine: Optional[int] = None  # f the server assumes among a round's n replies; None = attackers x sampled
    trim: float = 0.2  # trimmed_mean: share beta cut from each tail of every coordinate
    select: int = 0  # multikrum: m updates averaged; 0 = n - f
    clip: float = 0.0  # norm_clip and centered_clip: the bound tau; 0 = the round's median norm
    iterations: int = 3  # centered_clip: L clipping passes
    root: int = 100  # fltrust: the server's clean root images (its first public train images)

    def __post_init__(self) -> None:
        _require(self.byzantine is None or self.byzantine >= 0, "byzantine must be null or >= 0", self.byzantine)
        _require(0 <= self.trim < 0.5, "trim must be in [0, 0.5)", self.trim)
        _require(self.select >= 0, "select must be >= 0 (0: n - f)", self.select)
        _require(0 <= self.clip <= 1e6, "clip must be from 0 to 1e6 (0: the median norm)", self.clip)
        _require(1 <= self.iterations <= 100, "iterations must be from 1 to 100", self.iterations)
        _require(1 <= self.root <= 1000, "root must be from 1 to 1000 (the public images)", self.root)


ROBUST = ("median", "trimmed_mean", "krum", "multikrum", "bulyan", "norm_clip", "centered_clip", "fltrust")
MAX_CLIENTS = 5000  # the in-process grid keeps one context per client; beyond this use backend "ray"
MAX_ROUNDS = 1000


@dataclass(frozen=True)
class FederationConfig:
    """A federated training run on Flower (`python -m engine simulate`): who trains, how often, over what network."""

    clients: int = 100  # clients, each holding a share of the bundled train sample (after the attacker's public images)
    rounds: int = 20  # server rounds
    fraction: float = 0.1  # share of the clients sampled each round
    local_epochs: int = 5  # E: passes over its share a sampled client makes
    batch_size: int = 16  # local mini-batch B
    lr: float = 0.1  # local SGD learning rate
    pretrain: int = 0  # epochs the server first trains round 0's model on its public images (0: from its random init)
    strategy: Literal["fedavg", "fedprox", "median", "trimmed_mean", "krum", "multikrum", "bulyan", "norm_clip",
                      "centered_clip", "fltrust"] = "fedavg"  # the Flower strategy the server runs
    proximal_mu: float = 0.01  # fedprox: weight of (mu / 2) ||w - w_t||^2 in the local loss
    dropout: float = 0.0  # chance that a sampled client vanishes during a round (never replies)
    latency: Spread = field(default_factory=lambda: Spread(0.1, 0.5))  # seconds, one way
    bandwidth: BandwidthConfig = field(default_factory=BandwidthConfig)
    compute: Spread = field(default_factory=lambda: Spread(400.0, 0.8))  # images per second a client trains on
    deadline: float = 30.0  # seconds the server waits each round; later replies are stragglers and dropped
    secure_threshold: int = 0  # secure aggregation's t; 0 = a majority of the sampled clients
    backend: Literal["inprocess", "ray", "deployment"] = "inprocess"
    keep_views: tuple[int, ...] = ()  # rounds whose server view (aggregate and replies) is kept to attack
    attack: Literal["none", "sign_flip", "gaussian", "alie", "ipm", "label_flip", "backdoor"] = "none"  # poisoned clients
    attackers: float = 0.2  # share of the clients that attack (when attack is not "none")
    poison: PoisonConfig = field(default_factory=PoisonConfig)
    robust: RobustConfig = field(default_factory=RobustConfig)

    def __post_init__(self) -> None:
        _require(1 <= self.clients <= MAX_CLIENTS, f"clients must be from 1 to {MAX_CLIENTS}", self.clients)
        _require(1 <= self.rounds <= MAX_ROUNDS, f"rounds must be from 1 to {MAX_ROUNDS}", self.rounds)
        _require(0 < self.fraction <= 1, "fraction must be in (0, 1]", self.fraction)
        _require(int(self.clients * self.fraction) >= 1,
                 f"fraction samples no client: {self.clients} clients x fraction must be at least 1", self.fraction)
        _require(1 <= self.local_epochs <= 100, "local_epochs must be from 1 to 100", self.local_epochs)
        _require(1 <= self.batch_size <= 1024, "batch_size must be from 1 to 1024", self.batch_size)
        _require(0 < self.lr <= 10, "lr must be in (0, 10]", self.lr)
        _require(0 <= self.pretrain <= 20, "pretrain must be from 0 to 20 epochs", self.pretrain)
        _require(0 <= self.proximal_mu <= 100, "proximal_mu must be from 0 to 100", self.proximal_mu)
        _require(0 <= self.dropout < 1, "dropout must be in [0, 1) (at 1 no client ever replies)", self.dropout)
        _require(0 < self.deadline <= 1e6, "deadline must be in (0, 1e6] seconds (at 0 no client replies)", self.deadline)
        _require(self.secure_threshold >= 0, "secure_threshold must be >= 0 (0: a majority)", self.secure_threshold)
        _require(self.secure_threshold <= self.sampled,
                 f"secure_threshold must be at most the {self.sampled} clients sampled a round (more could never "
                 f"all reply, so no round would finish)", self.secure_threshold)
        _require(all(1 <= r <= self.rounds for r in self.keep_views),
                 f"keep_views must list rounds from 1 to rounds ({self.rounds})", self.keep_views)
        _require(0 <= self.attackers < 0.5, "attackers must be in [0, 0.5) (f >= n / 2 outvotes any aggregator)",
                 self.attackers)
        self._check_robust()

    def _check_robust(self) -> None:
        """The rules that bind the robust aggregators, for the n clients sampled a round and f assumed."""
        n, f = self.sampled, self.byzantine
        rule = {
            "krum": (n > 2 * f + 2, f"krum needs n > 2f + 2: n = {n} sampled, f = {f}"),
            "multikrum": (n > 2 * f + 2 and self.robust.select <= n - f,
                          f"multikrum needs n > 2f + 2 and select <= n - f: n = {n} sampled, f = {f}"),
            "bulyan": (n >= 4 * f + 3, f"bulyan needs n >= 4f + 3: n = {n} sampled, f = {f}"),
            "trimmed_mean": (self.robust.trim >= f / n,
                             f"trimmed_mean needs trim >= f / n = {f}/{n} (it must cut every attacker off)"),
            "median": (2 * f < n, f"median breaks down at f >= n / 2: n = {n} sampled, f = {f}"),
        }.get(self.strategy, (True, ""))
        _require(rule[0], rule[1] + "; sample more clients, assume fewer attackers (robust.byzantine) "
                 "or pick another strategy", self.strategy)

    @property
    def byzantine(self) -> int:
        """f: the attackers a robust aggregator assumes among a round's sampled clients."""
        if self.robust.byzantine is not None:
            return self.robust.byzantine
        return math.ceil(self.attackers * self.sampled - 1e-9) if self.attack != "none" else 0

    @property
    def sampled(self) -> int:
        """Clients sampled each round."""
        return max(1, int(self.clients * self.fraction))

    @property
    def threshold(self) -> int:
        """Secure aggregation's t for a round of `sampled` clients."""
        return self.secure_threshold or self.sampled // 2 + 1


@dataclass(frozen=True)
class Config:
    seed: int = 0  # seeds image choice, model init and attack init
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda if available
    threads: int = 1  # CPU threads for torch
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    leak: LeakConfig = field(default_factory=LeakConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    defence: DefenceConfig = field(default_factory=DefenceConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)

    def __post_init__(self) -> None:
        _require(self.seed >= 0, "seed must be >= 0", self.seed)
        _require(self.seed < 2**32, "seed must be below 2^32 (the seeds derived from it must fit torch's)", self.seed)
        _require(self.threads >= 1, "threads must be >= 1", self.threads)
        _require(self.threads <= 256, "threads must be at most 256 (more threads than cores only slow torch down)",
                 self.threads)
        _require(self.leak.round <= self.federation.rounds,
                 f"leak.round must be at most federation.rounds ({self.federation.rounds})", self.leak.round)
        images = self.data.batch_size * self.data.clients
        _require(self.leak.server == "honest" or self.leak.bins >= images,
                 f"leak.bins must be at least the images in the round ({images}: data.batch_size x data.clients)",
                 self.leak.bins)
        _require(self.attack.name not in ("imprint", "trap") or self.leak.server == self.attack.name,
                 f"attack.name {self.attack.name!r} reads a dishonest server's layer: set leak.server={self.attack.name}",
                 self.leak.server)
        f, d = self.federation, self.defence
        hidden = d.secure_aggregation or (d.dp.noise_multiplier > 0 and d.dp.level == "client")
        _require(not (hidden and f.strategy in ROBUST),
                 f"federation.strategy {f.strategy!r} needs each client's update, which secure aggregation (or "
                 "client-level DP's noisy sum) hides from the server: turn one off", f.strategy)
        _require(not (d.secure_aggregation and f.attack in ("alie", "ipm")),
                 f"federation.attack {f.attack!r} has the attackers read the honest updates of their round, "
                 "which secure aggregation hides: turn one off", f.attack)


# -----------------------------------------------------------------------------
# generic loader


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(tp: Any) -> str:
    """A type as a reader of the JSON would name it: 'int', 'one of ...', 'list of int', 'section'."""
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        return "an object (section)"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return f"a list of {_describe(args[0])}"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, path: str, nullable: bool = False) -> Any:
    """Check `value` (decoded JSON) against the type hint `tp`; return it in the dataclass's type."""
    origin, args = get_origin(tp), get_args(tp)
    error = ConfigError(f"{path}: expected {_describe(tp)}{' or null' if nullable else ''}, got {_show(value)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise error
        return from_dict(tp, value, path)
    if origin in (Union, types.UnionType):  # Optional[X] only
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"{path}: unsupported type {tp}; use Optional[X]")
        return None if value is None else _convert(inner[0], value, path, nullable=True)
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            raise error
        return value
    if origin is tuple:
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{path}: unsupported type {tp}; use tuple[X, ...]")
        if not isinstance(value, (list, tuple)):
            raise error
        return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:  # accept an int; reject nan/inf, which JSON cannot hold, and ints past the largest float
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"{path}: unsupported type {tp}")
    if not ok:
        raise error
    return value


def _finite(number: int | float) -> bool:
    """Whether `number` is a finite float, or an int that converts to one (10**400 does not)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def from_dict(cls: type[T], data: Mapping[str, Any], path: str = "") -> T:
    """Build dataclass `cls` from decoded JSON; absent keys take their defaults. Raises `ConfigError`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'config'}: expected an object (section), got {_show(data)}")
    hints = get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in data:
        if key not in known:
            section = f"section '{path}'" if path else "the top level"
            raise ConfigError(f"unknown key '{_join(path, key)}'; known keys in {section}: {', '.join(known)}")
    kwargs = {key: _convert(hints[key], data[key], _join(path, key)) for key in known if key in data}
    try:
        return cls(**kwargs)
    except ConfigError as err:  # a range check in __post_init__ names the key within its section
        raise ConfigError(_join(path, str(err))) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dict of a config (tuples stay tuples; `json` writes them as lists)."""
    return dataclasses.asdict(cfg)


def to_json(cfg: Any) -> str:
    """JSON text of a config, indented by 2."""
    return json.dumps(to_dict(cfg), indent=2)


def _decode(text: str, what: str = "config") -> Any:
    """`json.loads`; what Python's decoder cannot read although it is JSON becomes a `ConfigError`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:  # e.g. '[' * 5000: the decoder recurses once per level
        raise ConfigError(f"{what} is nested too deeply (a config's sections nest a few levels, not thousands)") from None
    except ValueError:  # an integer of more than 4300 digits, which Python will not read
        raise ConfigError(f"{what} holds a number of more than 4300 digits") from None


def from_json(text: str) -> Config:
    """Parse a `Config` from JSON text; keys left out take their defaults."""
    try:
        data = _decode(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"config is not valid JSON: {err}") from None
    return from_dict(Config, data)


def load_config(path: str | Path) -> Config:
    """Read a `Config` from a JSON file; errors name the file."""
    try:
        return from_json(Path(path).read_text())
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _parse_value(raw: str) -> Any:
    """'8' -> 8, '0.1' -> 0.1, 'true' -> True, 'null' -> None, '[1,2]' -> [1, 2], 'mnist' -> 'mnist'."""
    try:
        return _decode(raw, f"the value {_show(raw)}")
    except json.JSONDecodeError:
        return raw


def with_overrides(cfg: T, overrides: Sequence[str]) -> T:
    """A copy of `cfg` with each "section.key=value" applied; value is JSON if it parses, else a string.

    A value that parses as JSON but does not fit its key is tried once more as the plain string, so
    `attack.labels=true` means the label mode "true", while `data.download=true` stays a bool."""
    data = to_dict(cfg)
    for item in overrides:
        dotted, sep, raw = item.partition("=")
        keys = dotted.strip().split(".")
        if not sep or not all(keys):
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        node = data
        for depth, key in enumerate(keys[:-1]):
            if node.get(key) is None:  # an unknown section is then rejected by from_dict
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{'.'.join(keys[: depth + 1])}' is a value, not a section")
        parsed = _parse_value(raw.strip())
        node[keys[-1]] = parsed
        if not isinstance(parsed, str):
            try:
                from_dict(type(cfg), data)
            except ConfigError:
                node[keys[-1]] = raw.strip()
                try:
                    from_dict(type(cfg), data)
                except ConfigError:
                    node[keys[-1]] = parsed  # neither fits: report the error for the JSON reading
    return from_dict(type(cfg), data)
