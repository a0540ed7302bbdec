"""Gradient inversion with a diffusion prior: sample the batch from p(x | g) by guided denoising.

The posterior of the VAE attack (prior.py, Eq. 1), p(x | g) proportional to p(g | x) p(x), with p(x) now a
denoising diffusion model (engine/priors/diffusion.py: x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, a U-Net
eps_theta, the clean estimate x0_hat(x_t) of its Eq. 3, the DDIM step of its Eq. 4). Its score is what the
denoiser learnt, grad_x log p_t(x_t) = -eps_theta(x_t, t) / sqrt(1 - ab_t), and the likelihood's is
approximated through the clean estimate (Chung et al., "Diffusion Posterior Sampling", 2023):

    grad_{x_t} log p(g | x_t)  ~  -grad_{x_t} d( g(x0_hat(x_t)), g ) / sigma_g^2                    # Eq. (1)

so each reverse step is a DDIM step followed by a step against the gradient distance d of prior.py's
Eq. (2), pulled back through the denoiser, normalised per image to a fixed pixel RMS zeta:

    x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s) eps_theta(x_t, t)                                    # Eq. (2)
          - zeta sqrt(D) grad_i / |grad_i|,     grad = grad_{x_t} d(g(x0_hat(x_t)), g)             # ("dps")

or, with ``guidance="pnp"``, the data step is taken on the clean estimate itself and the chain re-noised
from it (plug-and-play, Zhu et al., "DiffPIR", 2023): k signed-Adam steps from x0_hat on

    x0' = argmin_x0  d(g(x0), g) + lambda |x0 - x0_hat|^2 / D,                                      # Eq. (3)
    x_s = sqrt(ab_s) x0' + sqrt(1 - ab_s) (x_t - sqrt(ab_t) x0') / sqrt(1 - ab_t)                 # Eq. (4)

The four stages of DLG are there: a start (noise), the dummy gradient g(x0_hat), the comparison d, an
update that is a guided denoising step.

One pass down the chain moves the images only as far as its start's noise lets it (t0 = 200 of 1000 keeps
each digit's identity and redraws its strokes). So the chain is run in rounds, each re-noising the previous
round's lowest-loss images (by the attack's own distance: any clean estimate on the way, or the round's end)
to a t0 that anneals from ``t_start`` to ``t_end`` over the restart, and walking them back down:

    x_{t0(r)} = sqrt(ab_{t0(r)}) x0_best^(r-1) + sqrt(1 - ab_{t0(r)}) eps,
    t0(r) = t_start + (t_end - t_start) r / (R - 1)                                              # Eq. (5)

(a restart's time, when it runs out first, sets the progress instead of r / (R - 1)). Early rounds with
much noise may redraw a digit that the previous one got wrong, late ones only its strokes: a
search over the posterior's modes with the denoiser proposing each move (RePaint, Lugmayr et al. 2022,
also goes back up the chain and down again, "resampling", there so that an inpainted region agrees with
what it was given). Measured here on batches of 32 (README, "The diffusion prior against the VAE"):
from one and the same VAE answer one 60-step pass added 0.6-1.1 dB, rounds for the same seconds and more
0.6-5.5 dB; 15 steps a round beat 8, 30 and 60; t0 annealed from 350 to 100 beat a fixed 200 by about 1 dB
and 500 to 100; guidance on x0_hat without the way back through the denoiser (cheaper by a quarter) lost
3-5 dB.

What a restart answers: the late rounds all start from nearly the same images and redraw their strokes
under the gradient's pull, so their ends are samples from near one mode of the posterior. Their mean
estimates the posterior mean there, the estimate with the least expected squared error (which is what
PSNR scores), where any one of them, or the lowest-loss images, carries its own stroke noise:

    x_hat = (1 / K) sum_{r = R-K+1..R} x_0^(r),     K = floor(average R)                            # Eq. (6)

over the R rounds that reached t = 0 (with K < 2 the lowest-loss images, the MAP, are the answer).
Measured on 8 batches of 32 (60 s): the mean of the last quarter beat the lowest-loss images on every
batch, by 0.5-1.0 dB (22.4 -> 23.2 dB mean), the share nearer their own victim unchanged; the last half
gave 23.1, the rounds within 1.5x the lowest loss 22.8.

Where the first round starts (``start``):
- "noise": x_T ~ N(0, I), the whole chain from T (pure DPS). Measured here (FINDINGS, "A small diffusion
  prior"): on a batch of 32 a CPU-sized model from noise loses to the VAE (12-14 dB against 22).
- "vae" (the default): the VAE attack's MAP digits (prior.py, Eq. 3 and its refinement) after
  ``vae_share`` of each restart's time (a twelfth: 5 s of a minute), noised to t_start by Eq. (1) of the
  diffusion model: the VAE finds roughly which digit is where, cheaply; the rounds redraw them in the
  diffusion model's strokes and fix what the VAE got wrong. When too few rounds reach t = 0 for Eq. (6),
  the attack's own distance decides: the lowest-loss images over the VAE stage and every round.

Restarts are posterior samples as for the VAE: a different start and noise each, each answering Eq. (6);
the answer with the lowest loss is kept, the per-pixel spread over all of them (matched image to image)
shows where the attacker guesses.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Generator, Iterator, Literal

import torch

from ..labels import Auxiliary
from ..leakage import Leak
from ..objectives import create_distance
from ..priors import Prior
from ..priors.diffusion_store import DiffusionPrior
from .inversion import _Clock
from .prior import PriorSettings, VAEPriorAttack, _Sample, run_restarts
from .stages import compare, dummy_gradient
from .step import AttackStep, drain

__all__ = ["DiffusionSettings", "DiffusionPriorAttack", "MAX_BATCH", "MIN_SAMPLER_STEPS"]

MAX_BATCH = 256  # images the sampler takes at once (the U-Net's and the victim's second-order activations)
MIN_SAMPLER_STEPS = 3  # a sampler pass shorter than this is not a pass: the time budget is too small


@dataclass(frozen=True)
class DiffusionSettings:
    """The knobs of the diffusion-prior attack (the VAE stage's in `vae`)."""

    start: Literal["vae", "noise"] = "vae"  # where the chain starts: the VAE's MAP noised to t0, or pure noise
    t_start: int = 350  # t0 of the first round for start="vae" (of the model's 1000 steps); "noise" starts at T
    t_end: int = 100  # t0 of the last round: Eq. (5) anneals the re-noising from t_start down to it
    sampler_steps: int = 15  # guided DDIM steps of each round (fewer when the time budget says so)
    rounds: int = 48  # rounds of re-noising and guided denoising per restart, Eq. (5); a time limit ends them sooner
    average: float = 0.25  # Eq. (6): the share of last rounds whose ends are averaged into the answer; 0 = the MAP
    guidance: Literal["dps", "pnp"] = "dps"  # Eq. (2) through the denoiser, or Eq. (3)-(4) on x0_hat
    zeta: float = 0.03  # dps: pixel RMS of each guidance step (in the [-1, 1] scale of the chain)
    inner: int = 2  # pnp: signed-Adam steps of Eq. (3) per reverse step
    inner_lr: float = 0.01  # pnp: their step size
    proximity: float = 1.0  # pnp: lambda of Eq. (3)
    vae_share: float = 1 / 12  # start="vae": each restart's share of time for the VAE stage (the rounds get the rest)
    restarts: int = 1  # posterior samples: the best is the MAP, the spread is over all
    iterations: int = 400  # the VAE stage's latent steps (its time share usually ends it first)
    refine: int = 200  # the VAE stage's refinement steps
    lr: float = 0.1  # the VAE stage's Adam on the latent codes
    sigma_g: float = 1e-3  # the VAE stage's likelihood width
    distance: str = "cosine_rows"  # a name in engine.objectives.DISTANCES
    labels: Literal["true", "recovered"] = "recovered"
    time_limit: float = 0.0  # seconds for the whole attack, shared by the restarts; 0 = none
    seed: int = 0

    def vae_settings(self) -> PriorSettings:
        """The VAE stage's settings."""
        return PriorSettings(iterations=self.iterations, refine=self.refine, lr=self.lr, sigma_g=self.sigma_g,
                             distance=self.distance, labels=self.labels, restarts=1, seed=self.seed)


class DiffusionPriorAttack:
    """Posterior samples of the leaked batch under a diffusion prior; same stepper as DLG/IG/vae_prior."""

    name = "diffusion_prior"

    def __init__(self, settings: DiffusionSettings, diffusion: DiffusionPrior, prior: Prior,
                 auxiliary: Auxiliary | None = None) -> None:
        if diffusion.name != prior.name:
            raise ValueError(f"the diffusion prior ({diffusion.name}) and the VAE ({prior.name}) must be of one data set")
        self.settings = settings
        self.diffusion = diffusion
        self.prior = prior  # the VAE: the "vae" start, and the label probes
        self.vae = VAEPriorAttack(settings.vae_settings(), prior, auxiliary)
        self.distance = create_distance(settings.distance)

    def __repr__(self) -> str:
        return f"DiffusionPriorAttack(prior trained on {self.prior.name}, {self.settings})"

    def run(self, leak: Leak, true_labels: torch.Tensor | None = None) -> AttackStep:
        """Drain the attack; the last step holds the MAP reconstruction and the spread."""
        return drain(self.steps(leak, true_labels))

    def labels(self, leak: Leak, true_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The labels the attack assumes, (B,) sorted: read as the VAE attack reads them."""
        return self.vae.labels(leak, true_labels)

    def check(self, leak: Leak) -> None:
        """The prior must make the victim's images; the batch must fit; the time must hold a sampler pass."""
        self.vae.check(leak)
        model = self.diffusion.model
        if tuple(leak.image_shape) != (model.channels, model.size, model.size):
            raise ValueError(f"the {self.diffusion.name} diffusion prior makes {model.channels}x{model.size}x"
                             f"{model.size} images but the victim takes {'x'.join(map(str, leak.image_shape))}")
        if leak.num_images > MAX_BATCH:
            raise ValueError(f"a batch of {leak.num_images} images is more than the diffusion sampler takes at once "
                             f"({MAX_BATCH}); use vae_prior for it")
        s = self.settings
        if not 0 <= s.average <= 1:
            raise ValueError(f"average is the share of last rounds averaged into the answer, in [0, 1]; got {s.average:g}")
        if s.time_limit:
            share = s.time_limit / s.restarts * (1 - s.vae_share if s.start == "vae" else 1)
            needed = MIN_SAMPLER_STEPS * self.seconds_per_step(leak)
            if share < needed:
                raise ValueError(
                    f"time_limit {s.time_limit:g} s leaves {share:.1f} s to each restart's sampler, below one "
                    f"pass of {MIN_SAMPLER_STEPS} guided steps (~{needed:.1f} s for this batch here): raise "
                    "time_limit or lower restarts"
                )

    def seconds_per_step(self, leak: Leak) -> float:
        """One guided step timed on this batch and victim (a U-Net pass, the dummy gradient, the way back);
        the faster of two, so the first call's warm-up does not count."""
        device = next(iter(leak.params.values())).device
        model = self.diffusion.model.to(device)
        x = torch.zeros((leak.num_images, *leak.image_shape), device=device, requires_grad=True)
        labels = torch.zeros(leak.num_images, dtype=torch.long, device=device)
        t = torch.full((len(x),), model.timesteps // 2, device=device, dtype=torch.long)
        times = []
        for _ in range(2):
            began = time.perf_counter()
            x0_hat, _ = model.denoise(x, t)
            torch.autograd.grad(self._loss(leak, (x0_hat + 1) / 2, labels), x)
            times.append(time.perf_counter() - began)
        return min(times)

    def steps_per_restart(self, leak: Leak) -> int:
        """At most how many steps one restart yields: the VAE stage's, then the sampler's."""
        vae = self.vae.steps_per_restart(leak) if self.settings.start == "vae" else 0
        return vae + self.settings.rounds * (self.settings.sampler_steps + 1)

    def _loss(self, leak: Leak, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return compare(dummy_gradient(leak, images, labels), leak, self.distance)  # prior.py, Eq. (2)

    def steps(self, leak: Leak, true_labels: torch.Tensor | None = None) -> Iterator[AttackStep]:
        """Yield a step per VAE iteration and per guided denoising step of each restart; the last one is
        `done`, with the MAP images and, over the restarts, the per-pixel `spread`."""
        self.check(leak)
        s = self.settings
        clock = _Clock()
        device = next(iter(leak.params.values())).device
        self.prior.vae.to(device)
        self.diffusion.model.to(device)
        labels = self.labels(leak, None if true_labels is None else true_labels.cpu()).to(device)
        yield from run_restarts(
            lambda restart, deadline, samples: self._restart(leak, labels, restart, clock, deadline, samples),
            s.restarts, s.time_limit, clock, labels,
            f"finished {s.restarts} restart(s) ({s.start} start, {s.rounds} round(s) of {s.sampler_steps} guided "
            f"{s.guidance} steps)",
            lambda: torch.full((leak.num_images, *leak.image_shape), 0.5, device=device),
        )

    def _restart(self, leak, labels, restart, clock, deadline, samples) -> Generator[AttackStep, None, _Sample | None]:
        """One restart: the start (the VAE's MAP noised to t0 for ``vae_share`` of the time, or noise), then
        the rounds of the guided chain down to t = 0, each from the last round's best images (Eq. 5)."""
        s = self.settings
        model = self.diffusion.model
        device = labels.device
        best_before = min((x.loss for x in samples), default=math.inf)
        begin = clock()
        generator = torch.Generator().manual_seed(s.seed * 1000 + restart)
        shape = (leak.num_images, *leak.image_shape)
        kept: _Sample | None = None
        ends: list[torch.Tensor] = []  # each complete round's x_0, for Eq. (6)
        taken = 0
        if s.start == "vae":
            vae_deadline = begin + (deadline - begin) * s.vae_share
            space, basis = self.vae.refinement(leak)
            run = self.vae._restart(leak, labels, restart, clock, vae_deadline, samples, space, basis)
            last = None
            try:
                while True:  # passed on as they come: the caller's _forward discounts the pauses, once
                    try:
                        last = next(run)
                    except StopIteration as end:
                        kept = end.value
                        break
                    yield last
            finally:
                run.close()
            taken = last.iteration if last is not None else 0
            if kept is None:
                return None
            t0 = min(s.t_start, model.timesteps - 1)
            eps = torch.randn(shape, generator=generator).to(device)
            with torch.no_grad():
                x = model.noise(kept.images, torch.full((shape[0],), t0, device=device, dtype=torch.long), eps)
        else:
            t0 = model.timesteps - 1
            x = torch.randn(shape, generator=generator).to(device)
            yield AttackStep(0, "dummy", restart, math.nan, best_before, ((x.clamp(-1, 1) + 1) / 2), labels, clock())
        chain_start = clock()
        budget = deadline - chain_start  # the chain's seconds (inf without a time limit)
        done = 0  # guided steps taken over the rounds
        per_step = math.nan  # seconds, timed on the first step
        for round_ in range(s.rounds):
            if round_:  # Eq. (5): re-noise the last round's best images to the annealed t0 and walk back down
                progress = max(round_ / max(s.rounds - 1, 1), (clock() - chain_start) / budget)
                t0 = self.round_start(min(progress, 1.0))
                eps = torch.randn(shape, generator=generator).to(device)
                with torch.no_grad():
                    x = model.noise(current.images, torch.full((shape[0],), t0, device=device, dtype=torch.long), eps)
            current: _Sample | None = None  # this round's lowest-loss images: the next round starts from them
            ts = model.schedule(t0, s.sampler_steps)
            if math.isfinite(per_step) and math.isfinite(budget):  # the round must end by the deadline: re-space it
                fit = int((deadline - clock()) / per_step) - 1
                if fit < 1:
                    break
                if fit < len(ts) - 2:
                    ts = model.schedule(t0, fit)
            i = 0
            while i < len(ts) - 1:
                t, following = ts[i], ts[i + 1]
                tt = torch.full((shape[0],), t, device=device, dtype=torch.long)
                began = clock()
                if s.guidance == "dps":
                    x, x0_hat, value = self._dps_step(leak, labels, x, tt, following)
                else:
                    x, x0_hat, value = self._pnp_step(leak, labels, x, tt, following)
                if not math.isfinite(value):
                    return kept
                if math.isnan(per_step):
                    per_step = max(clock() - began, 1e-6)
                images = ((x0_hat + 1) / 2).clamp(0, 1)
                if current is None or value < current.loss:
                    current = _Sample(value, images, torch.empty(0))
                if kept is None or value < kept.loss:
                    kept = current
                i += 1
                done += 1
                yield AttackStep(taken + done, "update", restart, value, min(best_before, kept.loss), images,
                                 labels, clock())
                if i == 1 and round_ == 0 and math.isfinite(budget):  # the first step says how many fit
                    room = int((budget - (clock() - chain_start)) / per_step)
                    if room < len(ts) - 2:
                        ts = [*ts[:1], *model.schedule(following, max(room, 1))]
                if math.isfinite(budget) and clock() > deadline:
                    break
            with torch.no_grad():  # the round's end: x is x_0 after the last step (or the last x_s if cut short)
                final = ((x + 1) / 2).clamp(0, 1) if i == len(ts) - 1 else None
            if final is not None:
                ends.append(final)
                value = float(self._loss(leak, final, labels).detach())
                if math.isfinite(value) and value < current.loss:
                    current = _Sample(value, final, torch.empty(0))
                    if value < kept.loss:
                        kept = current
                done += 1
                yield AttackStep(taken + done, "update", restart, value, min(best_before, kept.loss), final, labels,
                                 clock())
            if math.isfinite(budget) and clock() > deadline:
                break
        return self._late_mean(leak, labels, ends, kept)

    def _late_mean(self, leak, labels, ends: list[torch.Tensor], kept: _Sample | None) -> _Sample | None:
        """Eq. (6): the mean of the last ``average`` share of the round ends, with its loss; the lowest-loss
        images (``kept``) when fewer than two rounds fall in that share."""
        count = int(len(ends) * self.settings.average)
        if count < 2 or kept is None:
            return kept
        images = torch.stack(ends[-count:]).mean(dim=0)
        value = float(self._loss(leak, images, labels).detach())
        return _Sample(value, images, torch.empty(0)) if math.isfinite(value) else kept

    def round_start(self, progress: float) -> int:
        """t0 of a later round, Eq. (5): from ``t_start`` down to ``t_end`` as the chain's rounds (or its
        time) run out."""
        s = self.settings
        return min(round(s.t_start + (s.t_end - s.t_start) * progress), self.diffusion.model.timesteps - 1)

    def _dps_step(self, leak, labels, x, tt, following: int):
        """Eq. (1)-(2): a DDIM step and a guidance step through the denoiser's clean estimate."""
        model = self.diffusion.model
        x = x.detach().requires_grad_()
        x0_hat, eps = model.denoise(x, tt)  # Eq. (3) of the model
        fit = self._loss(leak, (x0_hat.clamp(-1, 1) + 1) / 2, labels)  # the dummy gradient of x0_hat, compared
        (grad,) = torch.autograd.grad(fit, x)  # Eq. (1)
        with torch.no_grad():
            norm = grad.flatten(1).norm(dim=1).clamp_min(1e-20).view(-1, *[1] * (x.dim() - 1))
            step = self.settings.zeta * math.sqrt(x[0].numel()) * grad / norm
            x0_hat = x0_hat.clamp(-1, 1)
            new = model.ddim_step(x0_hat, eps, following)  # Eq. (2), its DDIM part
            if following >= 0:
                new = new - step  # Eq. (2), its guidance
        return new, x0_hat, float(fit.detach())

    def _pnp_step(self, leak, labels, x, tt, following: int):
        """Eq. (3)-(4): the data step on the clean estimate, then re-noise from it."""
        s = self.settings
        model = self.diffusion.model
        with torch.no_grad():
            x0_hat, _ = model.denoise(x, tt)
            anchor = ((x0_hat.clamp(-1, 1) + 1) / 2)
        free = anchor.clone().requires_grad_()
        adam = torch.optim.Adam([free], lr=s.inner_lr)
        value = math.nan
        for _ in range(s.inner):
            fit = self._loss(leak, free, labels)
            loss = fit + s.proximity * (free - anchor).pow(2).mean()  # Eq. (3)
            adam.zero_grad()
            loss.backward()
            value = float(fit.detach())
            free.grad = free.grad.sign()
            adam.step()
            with torch.no_grad():
                free.clamp_(0, 1)
        with torch.no_grad():
            x0 = 2 * free.detach() - 1
            ab = model.alpha_bar[tt].view(-1, *[1] * (x.dim() - 1))
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
            new = model.ddim_step(x0, eps, following)  # Eq. (4)
        return new, x0, value
