"""Gradient inversion with a VAE image prior: a MAP estimate of the batch in latent space.

Pixel attacks (DLG, Inverting Gradients) search B x C x H x W pixels; once the gradient is an
average over dozens of images there are too many pixel batches that fit it. An image prior p(x)
turns the inversion into a posterior problem (the lab's headline lesson; ../shared/FINDINGS.md).

    p(x | g)  proportional to  p(g | x) p(x)                                            # Eq. (1)

Likelihood: a Gaussian of width sigma_g on the direction of the update (the server may scale it),

    -log p(g | x) = || g(x)/|g(x)| - g/|g| ||^2 / (2 sigma_g^2) + c
                  = (1 - cos(g(x), g)) / sigma_g^2 + c                                    # Eq. (2)

where g(x) is the update the dummies x (with labels y) would send. Prior: x = D(z), the decoder of
a VAE (engine.priors), with z_i ~ N(0, I) for each image i, so -log p(z) = 1/2 sum_i |z_i|^2 + c.

The MAP estimate, multiplied through by sigma_g^2 so the loss keeps the gradient distance's scale:

    z* = argmin_z  d(g(D(z)), g) + (sigma_g^2 / 2) sum_i |z_i|^2                          # Eq. (3)

d is the cosine distance of Eq. (2), by default with a per-row term on the classifier
(`engine.objectives.cosine_rows`). Each z_i starts at the latent mean of its recovered class; Adam
steps the codes in `cycles` warm restarts, the learning rate dropping 10x at 1/2 and 3/4 of each. A
new cycle starts from the best codes so far, re-encoded through the VAE,

    z <- mu(D(z_best))                                                                      # Eq. (3b)

which pulls codes that wandered off the region the decoder was trained on back to it (the fit gets
worse for a moment, then better). Measured on 8 batches of 32 digits on the ConvNet of width 32,
60 s, one restart: 3 cycles with re-encoding 18.7 dB mean against 17.6 for one plain cycle, never
worse on any batch (+0.1 to +2.8 dB); 2 cycles without re-encoding were no better than one.

The decoder caps any latent attack (it cannot draw a digit it cannot reconstruct, ~21 dB here), so
an optional second stage leaves its range a little. By default it frees the decoder's intermediate
feature map h (64 x 7 x 7 per image, the input of its two transposed convolutions: "intermediate
layer optimisation", Daras et al. 2021; GIAS, Jeon et al. 2021, frees the generator's weights instead)
and keeps the last layers, so what it draws is still stroke-like:

    h* = argmin_h  d(g(D_late(h)), g) + mu |h - h(z*)|^2 / |h|                             # Eq. (4)

or, with `refine_space="pixels"`, it refines pixels from x0 = D(z*) (signed Adam, box, TV):

    x* = argmin_{x in [0,1]}  d(g(x), g) + tv TV(x) + mu |x - x0|^2 / (B C H W)           # Eq. (5)

When the victim's first layer is fully connected on the pixels and wider than the batch, its
gradient confines every image to an n-dimensional subspace (`rowspace.py`), and `refine_space=
"rowspace"` (what "auto" picks there; "features" elsewhere) fits the images inside it from x0 = D(z*):

    c* = argmin_c  |g(V_n c) - g|^2 / |g|^2 + box penalty,   x* = V_n c*                    # Eq. (6)

There the prior's job is the start: the MAP digits are near enough that L-BFGS on n^2 numbers runs
to the exact batch (measured: 32 digits on a 256-unit MLP, 16-18 dB after the latent phase, then
above 60 dB); a start where all dummies are alike (DLG's grey) stays at 15 dB.

Measured here (one batch each, 60 s): freeing the features took a batch of 16 on DLG's LeNet from 19.1
to 26.5 dB and a batch of 32 on the ConvNet of width 32 from 18.0 to 21.1 dB; pixel refinement lowered
both (speckle on the ReLU victim). Averages over batches are in bench/prior.py and the README.

Several restarts give posterior samples: the one with the lowest loss is the MAP image, and the
per-pixel standard deviation over all of them (matched image to image) shows where the attacker is
sure and where it is guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Generator, Iterator, Literal

import torch
from scipy.optimize import linear_sum_assignment

from ..labels import Auxiliary, counts_to_labels, label_candidates
from ..leakage import Leak
from ..objectives import create_distance
from ..priors import Prior
from ..regularisers import total_variation
from .inversion import _Clock
from .rowspace import fit_in_rowspace, image_basis
from .stages import compare, dummy_gradient
from .step import AttackStep, drain

__all__ = ["PriorSettings", "VAEPriorAttack"]


@dataclass(frozen=True)
class PriorSettings:
    """The knobs of the VAE-prior attack."""

    iterations: int = 400  # latent (Adam) steps per restart
    refine: int = 200  # refinement steps after the latent phase (Eq. 4 or 5); 0 = none
    refine_space: Literal["auto", "features", "pixels", "rowspace"] = "auto"  # what the refinement frees;
    # auto: the row space (Eq. 6) when the victim's first layer allows it, else the decoder's features
    rowspace_steps: int = 20000  # at most this many L-BFGS evaluations in a row-space refinement (Eq. 6)
    latent_share: float | None = None  # with a time limit: each restart's share of time for the latent phase;
    # None = 0.6, or 0.25 before a row-space refinement (there the latent MAP is only its start)
    restarts: int = 2  # posterior samples: the best is the MAP, the spread is over all
    lr: float = 0.1  # Adam on the latent codes
    cycles: int = 3  # the latent phase's learning-rate cycles; each new one starts from the best codes so far
    reencode: bool = True  # a new cycle starts from mu(D(z_best)), Eq. (3b)
    refine_lr: float = 0.01  # Adam on the features (signed Adam on pixels)
    sigma_g: float = 1e-3  # width of the gradient likelihood, Eq. (2): smaller trusts the gradient more
    distance: str = "cosine_rows"  # a name in engine.objectives.DISTANCES
    tv: float = 1e-3  # total variation in a pixel refinement
    proximity: float = 0.0  # mu of Eq. (4)/(5): how near the latent MAP the refinement stays
    labels: Literal["true", "recovered"] = "recovered"
    label_samples: int = 512  # prior samples that estimate the batch's mean softmax for the label counts
    time_limit: float = 0.0  # seconds for the whole attack, shared by the restarts; 0 = none
    seed: int = 0


@dataclass
class _Sample:
    """One restart's outcome: its loss, images (B, C, H, W) and latent codes (B, d)."""

    loss: float
    images: torch.Tensor
    latents: torch.Tensor
    steps: int = 0  # latent + refinement steps the restart took


class VAEPriorAttack:
    """MAP (and posterior spread) of the leaked batch under a VAE prior; same stepper as DLG/IG."""

    name = "vae_prior"

    def __init__(self, settings: PriorSettings, prior: Prior, auxiliary: Auxiliary | None = None) -> None:
        self.settings = settings
        self.prior = prior
        self.auxiliary = auxiliary  # labelled images of the same kind, to read the labels with (Eq. 5 of engine.labels)
        self.distance = create_distance(settings.distance)

    def __repr__(self) -> str:
        return f"VAEPriorAttack(prior trained on {self.prior.name}, {self.settings})"

    def run(self, leak: Leak, true_labels: torch.Tensor | None = None) -> AttackStep:
        """Drain the attack; the last step holds the MAP reconstruction and the spread."""
        return drain(self.steps(leak, true_labels))

    def labels(self, leak: Leak, true_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The labels the attack assumes, (B,) sorted: the truth, or counts read off the gradient,
        fitted with the attacker's labelled auxiliary images when it holds some, else with the
        batch's mean softmax estimated on the prior's samples (FINDINGS: exact far more often than
        random probes)."""
        if self.settings.labels == "true":
            if true_labels is None:
                raise ValueError("labels='true' needs the true labels (an attacker who knows them)")
            return true_labels.sort().values
        if self.auxiliary is not None:
            return counts_to_labels(label_candidates(leak, limit=1, auxiliary=self.auxiliary)[0])
        generator = torch.Generator().manual_seed(self.settings.seed)
        with torch.no_grad():
            probes = self.prior.vae.sample(self.settings.label_samples, generator)
        return counts_to_labels(label_candidates(leak, limit=1, probes=probes)[0])

    def check(self, leak: Leak) -> None:
        """The prior must make images of the shape the victim takes."""
        vae = self.prior.vae
        made = (vae.channels, vae.size, vae.size)
        if tuple(leak.image_shape) != made:
            raise ValueError(
                f"the {self.prior.name} prior makes {made[0]}x{made[1]}x{made[2]} images but the victim takes "
                f"{'x'.join(map(str, leak.image_shape))}: use a 28-pixel grey data set (MNIST, Fashion-MNIST, faces)"
            )
        if self.settings.refine_space == "rowspace" and self.settings.refine and image_basis(leak) is None:
            raise ValueError(
                "refine_space 'rowspace' needs a victim whose first layer is fully connected on the pixels, has "
                f"more units than the batch has images ({leak.num_images}) and an update without noise: the MLP, say; "
                "use 'auto' or 'features'"
            )

    def steps_per_restart(self, leak: Leak) -> int:
        """At most how many steps one restart yields on `leak`: latent steps, then the refinement's."""
        if not self.settings.refine:
            return self.settings.iterations
        space, _ = self.refinement(leak)
        return self.settings.iterations + (self.settings.rowspace_steps if space == "rowspace" else self.settings.refine)

    def refinement(self, leak: Leak) -> tuple[str, torch.Tensor | None]:
        """The refinement's space, with 'auto' resolved, and the row-space basis V_n when it is used."""
        space = self.settings.refine_space
        basis = image_basis(leak) if space in ("auto", "rowspace") else None
        if space == "auto":
            space = "rowspace" if basis is not None else "features"
        return space, basis

    def steps(self, leak: Leak, true_labels: torch.Tensor | None = None) -> Iterator[AttackStep]:
        """Yield a step per latent or pixel iteration of each restart; the last one is `done`,
        with the MAP images and, over the restarts, the per-pixel `spread`."""
        self.check(leak)
        s = self.settings
        clock = _Clock()
        device = next(iter(leak.params.values())).device
        self.prior.vae.to(device)
        labels = self.labels(leak, None if true_labels is None else true_labels.cpu()).to(device)
        space, basis = self.refinement(leak)
        refined = s.rowspace_steps if space == "rowspace" else s.refine
        yield from run_restarts(
            lambda restart, deadline, samples: self._restart(leak, labels, restart, clock, deadline, samples,
                                                             space, basis),
            s.restarts, s.time_limit, clock, labels,
            f"finished {s.restarts} restart(s) of {s.iterations} latent + {refined} {space} refinement steps",
            lambda: self.prior.vae.decode(self._start(labels, 0).to(device)).detach(),
        )

    def _start(self, labels: torch.Tensor, restart: int) -> torch.Tensor:
        """z_i at its class's latent mean plus that class's spread times N(0, 1), (B, d)."""
        generator = torch.Generator().manual_seed(self.settings.seed * 1000 + restart)
        means, stds = self.prior.class_means.cpu(), self.prior.class_stds.cpu()
        noise = torch.randn((len(labels), means.shape[1]), generator=generator)
        labels = labels.cpu()
        return means[labels] + stds[labels] * noise  # (B, d)

    def _loss(self, leak: Leak, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return compare(dummy_gradient(leak, images, labels), leak, self.distance)  # Eq. (2)

    def _restart(
        self, leak, labels, restart, clock, deadline, samples, space, basis
    ) -> Generator[AttackStep, None, _Sample | None]:
        """One restart: the latent MAP (Eq. 3), then the refinement (Eq. 4, 5 or 6) in `space`."""
        s = self.settings
        vae = self.prior.vae
        device = labels.device
        best_before = min((x.loss for x in samples), default=math.inf)
        start_time = clock()
        budget = deadline - start_time  # this restart's seconds (inf without a time limit)
        share = s.latent_share if s.latent_share is not None else (0.25 if space == "rowspace" else 0.6)
        latent_budget = budget * (share if s.refine else 1.0)

        def step(iteration: int, loss: float, images: torch.Tensor) -> AttackStep:
            return AttackStep(iteration, "update", restart, loss, min(best_before, loss),
                              images.detach().clamp(0, 1), labels, clock())

        # --- latent phase: Eq. (3) -------------------------------------------------------------
        z = self._start(labels, restart).to(device).requires_grad_()
        adam = torch.optim.Adam([z], lr=s.lr)
        weight = s.sigma_g ** 2 / 2
        kept: _Sample | None = None
        taken = 0  # latent steps done
        yield AttackStep(0, "dummy", restart, math.nan, best_before, vae.decode(z).detach(), labels, clock())
        cycle = 0
        for iteration in range(1, s.iterations + 1):
            progress = max(iteration / s.iterations, (clock() - start_time) / latent_budget)
            if progress > 1 and iteration > 1:
                break
            if kept is not None and min(int(progress * s.cycles), s.cycles - 1) > cycle:  # a warm restart
                cycle += 1
                with torch.no_grad():
                    best = vae.encode(vae.decode(kept.latents))[0] if s.reencode else kept.latents  # Eq. (3b)
                z = best.clone().requires_grad_()
                adam = torch.optim.Adam([z], lr=s.lr)
            within = progress * s.cycles - cycle  # progress within this cycle
            for group in adam.param_groups:
                group["lr"] = s.lr * (0.1 if within > 0.5 else 1) * (0.1 if within > 0.75 else 1)
            images = vae.decode(z)  # x = D(z), (B, C, H, W)
            fit = self._loss(leak, images, labels)
            loss = fit + weight * z.pow(2).sum()  # Eq. (3)
            adam.zero_grad()
            loss.backward()
            value = float(fit.detach())
            if not math.isfinite(value):
                return kept
            if kept is None or value < kept.loss:
                kept = _Sample(value, images.detach(), z.detach().clone())
            adam.step()
            taken = iteration
            yield step(iteration, value, images)
        if kept is None or s.refine == 0:
            return kept
        if space == "rowspace":
            return (yield from self._refine_in_rowspace(leak, labels, kept, basis, deadline, clock, step, taken))

        # --- refinement: Eq. (4) in the decoder's features, or Eq. (5) in pixels ---------------------
        pixels = space == "pixels"
        with torch.no_grad():
            anchor = kept.images if pixels else vae.features(kept.latents)  # (B, C, H, W) or (B, 64, H/4, W/4)
        free = anchor.clone().requires_grad_()
        adam = torch.optim.Adam([free], lr=s.refine_lr)
        refine_start = clock()
        for iteration in range(1, s.refine + 1):
            progress = max(iteration / s.refine, (clock() - refine_start) / max(deadline - refine_start, 1e-9))
            if progress > 1 and iteration > 1:
                break
            for group in adam.param_groups:
                group["lr"] = s.refine_lr * (0.1 if progress > 0.5 else 1)
            images = free if pixels else vae.decode_features(free)
            fit = self._loss(leak, images, labels)
            loss = fit + s.proximity * (free - anchor).pow(2).mean()  # Eq. (4) / (5)
            if pixels:
                loss = loss + s.tv * total_variation(free)
            adam.zero_grad()
            loss.backward()
            value = float(fit.detach())
            if not math.isfinite(value):
                break
            if value < kept.loss:
                kept = replace(kept, loss=value, images=images.detach().clone())
            if pixels:
                free.grad = free.grad.sign()
            adam.step()
            if pixels:
                with torch.no_grad():
                    free.clamp_(0, 1)
            yield step(taken + iteration, value, images)
        return kept

    def _refine_in_rowspace(self, leak, labels, kept, basis, deadline, clock, step, taken):
        """Eq. (6): fit the images inside the span the first layer's gradient gives away, from the
        latent MAP; keep the result if the attack's own distance (Eq. 2) says it fits better."""
        fit = fit_in_rowspace(leak, labels, kept.images, basis, self.settings.rowspace_steps,
                              out_of_time=lambda: clock() > deadline)
        while True:
            try:
                evaluations, loss, images = next(fit)
            except StopIteration as end:
                _, images = end.value
                break
            yield step(taken + evaluations, loss, images)
        value = float(self._loss(leak, images, labels).detach())  # Eq. (2), comparable across restarts
        if math.isfinite(value) and value < kept.loss:
            kept = replace(kept, loss=value, images=images.clone())
        return kept


def run_restarts(
    restart: Callable[[int, float, list[_Sample]], Generator[AttackStep, None, _Sample | None]],
    restarts: int, time_limit: float, clock: _Clock, labels: torch.Tensor, reason: str,
    fallback: Callable[[], torch.Tensor],
) -> Iterator[AttackStep]:
    """The restarts as posterior samples, one after another, each to its share of ``time_limit`` (0 = none):
    ``restart(r, deadline, samples so far)`` is one restart's generator of steps (its return value the
    sample it keeps, None if it diverged). Yields every step, then the `done` step: the lowest-loss sample
    (the MAP) with the per-pixel spread over all of them; ``fallback()``'s images if every restart diverged."""
    samples: list[_Sample] = []
    runs: list[Generator] = []
    try:
        for r in range(restarts):
            deadline = time_limit * (r + 1) / restarts if time_limit else math.inf
            runs.append(restart(r, deadline, samples))
            sample, last = yield from _forward(runs[-1], clock)
            if sample is None:  # diverged before any finite loss
                continue
            samples.append(replace(sample, steps=last.iteration))
            if time_limit and clock() > time_limit:
                reason = f"time limit of {time_limit:g} s reached after {len(samples)} restart(s)"
                break
    finally:
        for run in runs:
            run.close()
    if not samples:
        yield AttackStep(0, "done", 0, math.nan, math.nan, fallback().clamp(0, 1), labels, clock(), True,
                         "the run diverged: every restart's loss became non-finite")
        return
    best = min(range(len(samples)), key=lambda r: samples[r].loss)
    spread = posterior_spread([sample.images for sample in samples], best, labels)
    yield AttackStep(
        samples[best].steps, "done", best, samples[best].loss, samples[best].loss,
        samples[best].images.clamp(0, 1), labels, clock(), True, reason, spread,
    )


def _forward(run: Generator, clock: _Clock):
    """Hand `run`'s steps to the caller (not counting the caller's time); return (its result, its last step)."""
    step = None
    while True:
        try:
            step = next(run)
        except StopIteration as end:
            return end.value, step
        yield from clock.hand_over(step)


def posterior_spread(samples: list[torch.Tensor], best: int, labels: torch.Tensor) -> torch.Tensor:
    """Per-pixel standard deviation over the restarts' images, (B, C, H, W), each restart's images
    first matched to the MAP's (only among images of the same label) so the same digit is compared
    with itself. Zero with a single restart."""
    reference = samples[best]
    same = labels[:, None] == labels[None, :]  # (B, B)
    aligned = []
    for images in samples:
        cost = torch.cdist(reference.flatten(1), images.flatten(1)).pow(2)  # (B, B)
        cost = torch.where(same, cost, torch.full_like(cost, 1e9))
        _, order = linear_sum_assignment(cost.cpu().numpy())
        aligned.append(images[torch.as_tensor(order, device=images.device)])
    return torch.stack(aligned).std(dim=0, unbiased=False)
