"""Image priors for the prior attacks: a small convolutional VAE and a small diffusion model per data set,
trained offline and shipped.

    prior = load_prior("mnist")                      # Prior: frozen VAE + class latent statistics + card
    x = prior.vae.decode(prior.class_means[[3, 7]])  # (2, 1, 28, 28): a typical 3 and 7
    index, distance = nearest_training_images(x, load_dataset("mnist", "train").images)
    diffusion = load_diffusion("mnist")              # DiffusionPrior: frozen denoiser + schedule + card
    x = diffusion.model.sample(16, steps=50)         # (16, 1, 28, 28) from pure noise
"""

from .diffusion import Diffusion, UNet
from .diffusion_store import DiffusionPrior, diffusion_path, load_diffusion, save_diffusion
from .nearest import nearest_training_images
from .store import PRIORS, Prior, PriorError, load_prior, prior_path, save_prior
from .vae import ConvVAE

__all__ = [
    "ConvVAE",
    "Prior",
    "PriorError",
    "PRIORS",
    "prior_path",
    "load_prior",
    "save_prior",
    "nearest_training_images",
    "Diffusion",
    "UNet",
    "DiffusionPrior",
    "diffusion_path",
    "load_diffusion",
    "save_diffusion",
]
