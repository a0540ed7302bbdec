"""A small denoising diffusion model: the image prior p(x) of the diffusion attack.

Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models" (2020); Song, Meng & Ermon, "Denoising
Diffusion Implicit Models" (2021). Images x0 in [0, 1] are mapped to [-1, 1] and noised in T steps with
a linear variance schedule beta_1..beta_T; in closed form, with alpha_bar_t = prod_{s<=t} (1 - beta_s),

    x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps,     eps ~ N(0, I)                  # Eq. (1)

A small U-Net eps_theta(x_t, t) is trained to name the noise (the "simple" loss of the paper):

    L = E_{x0, t, eps} | eps - eps_theta(x_t, t) |^2                                          # Eq. (2)

Its clean estimate (Tweedie's formula: the posterior mean E[x0 | x_t]) is

    x0_hat(x_t, t) = ( x_t - sqrt(1 - alpha_bar_t) eps_theta(x_t, t) ) / sqrt(alpha_bar_t)     # Eq. (3)

and the deterministic DDIM step (eta = 0) from t to an earlier s re-noises it with the same eps:

    x_s = sqrt(alpha_bar_s) x0_hat + sqrt(1 - alpha_bar_s) eps_theta(x_t, t)                   # Eq. (4)

The U-Net (28 -> 14 -> 7 and back, GroupNorm, SiLU, a sinusoidal time embedding added in each residual
block, skips by concatenation) has about half a million weights: small enough to train on a CPU in
half an hour (``scripts/train_diffusion.py``) and to run a batch of 32 through in tens of milliseconds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet", "Diffusion"]


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the integer steps t (B,) -> (B, dim), as in the Transformer."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added between, and a 1x1 skip when widths differ."""

    def __init__(self, cin: int, cout: int, tdim: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(tdim, cout)
        self.norm2, self.conv2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """eps_theta(x_t, t) for (channels, size, size) images, size divisible by 4; widths base and 2 base."""

    def __init__(self, channels: int = 1, size: int = 28, base: int = 32, patch: int = 1) -> None:
        super().__init__()
        if size % patch:
            raise ValueError(f"image size must be divisible by the patch {patch}, got {size}")
        self.channels, self.size, self.base, self.patch = channels, size, base, patch
        c1, c2, tdim = base, 2 * base, 4 * base
        self.tdim = tdim
        self.time_mlp = nn.Sequential(nn.Linear(tdim, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.inc = nn.Conv2d(channels * patch * patch, c1, 3, padding=1)
        self.down1 = ResBlock(c1, c1, tdim)  # S
        self.pool1 = nn.Conv2d(c1, c1, 3, stride=2, padding=1)  # S/2
        self.down2 = ResBlock(c1, c2, tdim)  # S/2
        self.pool2 = nn.Conv2d(c2, c2, 3, stride=2, padding=1)  # S/4
        self.mid1 = ResBlock(c2, c2, tdim)
        self.mid2 = ResBlock(c2, c2, tdim)
        self.up2 = ResBlock(c2 + c2, c2, tdim)  # S/2, with the skip of down2
        self.up1 = ResBlock(c2 + c1, c1, tdim)  # S, with the skip of down1
        self.out = nn.Sequential(nn.GroupNorm(8, c1), nn.SiLU(), nn.Conv2d(c1, channels * patch * patch, 3, padding=1))

    def config(self) -> dict[str, int]:
        """The constructor's arguments (stored beside the weights)."""
        return {"channels": self.channels, "size": self.size, "base": self.base, "patch": self.patch}

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(time_embedding(t, self.tdim))
        x = F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x  # (B, C p^2, S/p, S/p)
        h1 = self.down1(self.inc(x), emb)  # (B, c1, S/p, S/p)
        h2 = self.down2(self.pool1(h1), emb)  # (B, c2, S/2, S/2)
        h = self.mid2(self.mid1(self.pool2(h2), emb), emb)  # (B, c2, S/4, S/4)
        h = F.interpolate(h, size=h2.shape[-2:], mode="nearest")
        h = self.up2(torch.cat([h, h2], dim=1), emb)
        h = F.interpolate(h, size=h1.shape[-2:], mode="nearest")
        h = self.up1(torch.cat([h, h1], dim=1), emb)
        h = self.out(h)
        return F.pixel_shuffle(h, self.patch) if self.patch > 1 else h


class Diffusion(nn.Module):
    """A noise predictor with its schedule: Eq. (1)-(4) on images in [0, 1] (internally [-1, 1])."""

    def __init__(self, unet: UNet, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        super().__init__()
        self.unet = unet
        self.timesteps, self.beta_start, self.beta_end = timesteps, beta_start, beta_end
        betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        self.register_buffer("alpha_bar", torch.cumprod(1 - betas, 0).float(), persistent=False)  # (T,)

    @property
    def channels(self) -> int:
        return self.unet.channels

    @property
    def size(self) -> int:
        return self.unet.size

    def config(self) -> dict:
        """What rebuilds this model: the U-Net's arguments and the schedule."""
        return {**self.unet.config(), "timesteps": self.timesteps, "beta_start": self.beta_start,
                "beta_end": self.beta_end}

    def _ab(self, t: torch.Tensor) -> torch.Tensor:
        return self.alpha_bar[t].view(-1, 1, 1, 1)

    def noise(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t of Eq. (1) for images x0 in [0, 1] (B, C, S, S) and steps t (B,)."""
        ab = self._ab(t)
        return ab.sqrt() * (2 * x0 - 1) + (1 - ab).sqrt() * eps  # Eq. (1)

    def loss(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The simple loss of Eq. (2), per image (B,)."""
        return (self.unet(self.noise(x0, t, eps), t) - eps).pow(2).flatten(1).mean(1)  # Eq. (2)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_hat in [-1, 1] unclamped, eps_theta): Eq. (3) at steps t (B,)."""
        eps = self.unet(x_t, t)
        ab = self._ab(t)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt(), eps  # Eq. (3)

    def ddim_step(self, x0_hat: torch.Tensor, eps: torch.Tensor, s: int) -> torch.Tensor:
        """x_s of Eq. (4); s = -1 means the end (returns x0_hat)."""
        if s < 0:
            return x0_hat
        ab = self.alpha_bar[s]
        return ab.sqrt() * x0_hat + (1 - ab).sqrt() * eps  # Eq. (4)

    def schedule(self, start: int, steps: int) -> list[int]:
        """`steps` decreasing timesteps from `start` (inclusive) towards 0, then -1 (the end)."""
        start = min(max(start, 0), self.timesteps - 1)
        steps = max(1, min(steps, start + 1))
        ts = torch.linspace(start, 0, steps).round().long().tolist()
        return [*dict.fromkeys(ts), -1]

    @torch.no_grad()
    def sample(self, count: int, steps: int = 50, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [0, 1] (count, C, S, S) by `steps` DDIM steps (Eq. 3-4) from x_T ~ N(0, I)."""
        device = self.alpha_bar.device
        x = torch.randn((count, self.channels, self.size, self.size), generator=generator).to(device)
        return self.run_from(x, self.timesteps - 1, steps)

    @torch.no_grad()
    def reconstruct(self, x0: torch.Tensor, t: int, steps: int, generator: torch.Generator | None = None):
        """Noise images x0 in [0, 1] to step t (Eq. 1), then denoise them by `steps` DDIM steps."""
        eps = torch.randn(x0.shape, generator=generator).to(x0.device)
        x_t = self.noise(x0, torch.full((len(x0),), t, device=x0.device, dtype=torch.long), eps)
        return self.run_from(x_t, t, steps)

    @torch.no_grad()
    def run_from(self, x: torch.Tensor, start: int, steps: int) -> torch.Tensor:
        """Deterministic DDIM from x_start to an image in [0, 1]."""
        ts = self.schedule(start, steps)
        for t, s in zip(ts[:-1], ts[1:]):
            x0_hat, eps = self.denoise(x, torch.full((len(x),), t, device=x.device, dtype=torch.long))
            x = self.ddim_step(x0_hat.clamp(-1, 1), eps, s)
        return ((x.clamp(-1, 1) + 1) / 2)
