"""A small convolutional variational auto-encoder: the image prior p(x) of the VAE attack.

Kingma & Welling, "Auto-Encoding Variational Bayes" (2014). The decoder D maps a latent code
z ~ N(0, I) to an image; the encoder q(z | x) = N(mu(x), diag(sigma(x)^2)) is used to train it and to
find where each class lives in latent space (the attack starts there).

    encoder: x (C, S, S) -> conv 4x4/2 (32) -> conv 4x4/2 (64) -> fc 256 -> (mu, log sigma^2) in R^d
    decoder: z in R^d -> fc 256 -> fc 64 x S/4 x S/4 -> deconv 4x4/2 (32) -> deconv 4x4/2 (C) -> sigmoid

Training maximises the evidence lower bound, per image (Eq. (3) of the paper, Bernoulli decoder):

    ELBO(x) = E_q[ log p(x | z) ] - KL( q(z | x) || N(0, I) )                              # Eq. (1)
    KL      = 1/2 sum_j ( mu_j^2 + sigma_j^2 - log sigma_j^2 - 1 )                         # Eq. (2)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvVAE"]


class ConvVAE(nn.Module):
    """Encoder and decoder for (channels, size, size) images in [0, 1]; size divisible by 4."""

    def __init__(self, channels: int = 1, size: int = 28, latent: int = 16, hidden: int = 256) -> None:
        super().__init__()
        if size % 4:
            raise ValueError(f"image size must be divisible by 4, got {size}")
        self.channels, self.size, self.latent, self.hidden = channels, size, latent, hidden
        side = size // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, 32, 4, 2, 1), nn.ReLU(),  # (32, S/2, S/2)
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),  # (64, S/4, S/4)
            nn.Flatten(), nn.Linear(64 * side * side, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * latent),  # (mu, log sigma^2)
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(),
            nn.Linear(hidden, 64 * side * side), nn.ReLU(),
            nn.Unflatten(1, (64, side, side)),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),  # (32, S/2, S/2)
            nn.ConvTranspose2d(32, channels, 4, 2, 1),  # logits (C, S, S)
        )

    def config(self) -> dict[str, int]:
        """The constructor's arguments (stored beside the weights)."""
        return {"channels": self.channels, "size": self.size, "latent": self.latent, "hidden": self.hidden}

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x): (mu, log sigma^2), each (B, d), for images (B, C, S, S)."""
        mu, logvar = self.encoder(images).chunk(2, dim=1)
        return mu, logvar

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x | z), (B, C, S, S)."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """D(z): the decoded images in [0, 1], (B, C, S, S)."""
        return torch.sigmoid(self.decoder(z))

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's intermediate feature map h(z) before its transposed convolutions, (B, 64, S/4, S/4)."""
        return self.decoder[:5](z)

    def decode_features(self, h: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from a feature map h, (B, C, S, S): decode(z) == decode_features(features(z))."""
        return torch.sigmoid(self.decoder[5:](h))

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """D(mu(x)): encode to the posterior mean and decode, (B, C, S, S)."""
        return self.decode(self.encode(images)[0])

    def negative_elbo(self, images: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """-ELBO per image in nats, (B,), with one reparameterised sample z = mu + sigma * eps."""
        mu, logvar = self.encode(images)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logits = self.decode_logits(z)
        nll = F.binary_cross_entropy_with_logits(logits, images, reduction="none").flatten(1).sum(1)  # -log p(x|z)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1)  # Eq. (2)
        return nll + beta * kl  # -Eq. (1)

    def sample(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images decoded from z ~ N(0, I), (count, C, S, S)."""
        device = next(self.parameters()).device
        z = torch.randn((count, self.latent), generator=generator).to(device)
        return self.decode(z)
