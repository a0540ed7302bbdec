"""Defences against gradient inversion, as pure functions on updates, and what they cost.

    sigma = noise_for_epsilon(target_epsilon=2.0, sample_rate=0.01, steps=1000, delta=1e-5)
    noisy = dp_sgd_update(model, images, labels, noise_multiplier=sigma, max_norm=1.0)   # example level
    mean = dp_aggregate(client_updates, noise_multiplier=sigma, max_norm=1.0)           # client level
    pruned, ratio = prune_gradient(leak.update, fraction=0.2)                           # compression
    mean = secure_aggregate(client_updates, threshold=7)                                # Bonawitz et al. 2017
    step = create_attack("dlg").run(with_update(leak, noisy))                           # attack what is left
    update = defended_round(model, clients, config.defence, "fedsgd")                   # a config's defence
"""

from .accountant import epsilon, noise_for_epsilon
from .compression import prune_gradient, quantise, sign_compress, top_k
from .defended import with_update
from .dp import add_gaussian_noise, clip_per_example, clip_update, dp_aggregate, dp_sgd_update
from .pipeline import compress, defence_metrics, defended_round, round_epsilon
from .secure_aggregation import SecureAggregationError, secure_aggregate, secure_sum

__all__ = [
    "epsilon", "noise_for_epsilon",
    "clip_per_example", "add_gaussian_noise", "dp_sgd_update", "clip_update", "dp_aggregate",
    "top_k", "quantise", "sign_compress", "prune_gradient",
    "secure_sum", "secure_aggregate", "SecureAggregationError",
    "with_update", "defended_round", "compress", "round_epsilon", "defence_metrics",
]
