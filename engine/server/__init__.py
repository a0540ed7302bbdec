"""A dishonest server: models that make the update give the images away, and the clients' checks.

    model = imprint_model(victim, public_images, bins=1024)   # Fowl et al. 2022
    model = trap_model(victim, (1, 28, 28), rows=1024)        # Boenisch et al. 2023
    readout = read_imprint(leak)                              # exact images, one step
    verdict = vet_model(model, promised_victim, my_images)    # what a client can check
    hidden = disguise(model, public_images)                   # an adaptive server passes the checks
"""

from .attack import ServerAttack, create_server_attack
from .disguise import disguise
from .front import MaliciousModel, ServerPlan, inserted_parameters
from .imprint import Readout, expected_exact, imprint_model, read_imprint
from .ship import EXACT_DB, ModelRefused, public_images, serve, server_metrics
from .trap import read_trap, trap_model
from .vetting import CHECKS, Finding, Vetting, architecture, vet_model
from .view import (
    DishonestRound, client_verdicts, dishonest_round, front_parameters, layer_sizes, row_pictures, row_thresholds,
)

__all__ = [
    "MaliciousModel", "ServerPlan", "inserted_parameters", "imprint_model", "read_imprint", "expected_exact",
    "Readout", "trap_model", "read_trap", "disguise", "CHECKS", "Finding", "Vetting", "architecture", "vet_model",
    "ServerAttack", "create_server_attack", "ModelRefused", "public_images", "serve", "server_metrics", "EXACT_DB",
    "DishonestRound", "dishonest_round", "client_verdicts", "row_pictures", "layer_sizes", "front_parameters",
    "row_thresholds",
]
