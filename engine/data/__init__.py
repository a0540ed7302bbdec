"""Data for the lab: image sets, the victim's batch, federated clients, and user uploads.

    test = load_dataset("mnist")                                   # bundled 500-image sample, (N, 1, 28, 28)
    batch = select_batch(test, size=4, seed=0, unique_labels=True)
    x = to_model_input(batch.images, channels=3, size=32)          # for a CIFAR-shaped model
    clients = sample_client_batches(test, num_clients=5, batch_size=8, method="dirichlet", alpha=0.1)
"""

from .batch import Batch, select_batch
from .clients import SplitMethod, class_histogram, client_shares, sample_client_batches, split_clients
from .imageset import ImageSet
from .loading import DATASETS, load_dataset
from .transforms import to_model_input
from .uploads import UploadError, image_from_bytes

__all__ = [
    "ImageSet",
    "DATASETS",
    "load_dataset",
    "to_model_input",
    "UploadError",
    "image_from_bytes",
    "Batch",
    "select_batch",
    "SplitMethod",
    "split_clients",
    "class_histogram",
    "client_shares",
    "sample_client_batches",
]
