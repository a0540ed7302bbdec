"""Image priors for the VAE attack: a small convolutional VAE per data set, trained offline and shipped.

    prior = load_prior("mnist")                      # Prior: frozen VAE + class latent statistics + card
    x = prior.vae.decode(prior.class_means[[3, 7]])  # (2, 1, 28, 28): a typical 3 and 7
    index, distance = nearest_training_images(x, load_dataset("mnist", "train").images)
"""

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
]
