"""What a defence costs: test accuracy after a small FedAvg training run under it.

    result = fedavg_accuracy(config.defence, Training(clients=5, rounds=10))   # a TrainingResult
    result.accuracy, result.epsilon

FedAvg (McMahan et al. 2017, Algorithm 1, every client in every round): the bundled train sample
is dealt IID to K clients; in each of R rounds every client draws E * b images from its share and
runs E local SGD steps of b images from the global weights; the server applies the aggregate of
their weight changes, w <- w - Delta. Every round goes through `defended_round`, so the model is
trained under exactly the defence the attack faces, and the accountant counts R rounds (client
level) or R * E DP-SGD steps at q = b / (images per client) (example level).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .config import DefenceConfig
from .data import load_dataset, split_clients, to_model_input
from .defences import defended_round, round_epsilon
from .experiment import model_input_shape
from .models import create_model

__all__ = ["Training", "TrainingResult", "fedavg_accuracy"]


@dataclass(frozen=True)
class Training:
    """A small FedAvg run: few clients, few rounds, so a sweep stays in seconds per point."""

    dataset: str = "mnist"  # bundled sample: train for the clients, test for the accuracy
    model: str = "convnet"  # a ReLU net learns in a few rounds; DLG's sigmoid LeNet is slow to train
    clients: int = 5  # K
    rounds: int = 10  # R
    local_steps: int = 5  # E
    batch_size: int = 32  # b, images per local step
    local_lr: float = 0.2  # eta
    seed: int = 0


@dataclass(frozen=True)
class TrainingResult:
    """Test accuracy after each round (the last is the result) and the privacy spent."""

    accuracies: tuple[float, ...]  # after rounds 1..R, on the bundled test sample
    epsilon: Optional[float]  # at the defence's delta; None without noise

    @property
    def accuracy(self) -> float:
        return self.accuracies[-1]


def _accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(images).argmax(dim=1) == labels).float().mean())  # per image, in order


def fedavg_accuracy(
    defence: DefenceConfig, training: Training = Training(), on_round: Optional[Callable[[int, float], None]] = None
) -> TrainingResult:
    """Train a fresh model by FedAvg under `defence`; `on_round(round, accuracy)` after each round."""
    t = training
    train, test = load_dataset(t.dataset, "train"), load_dataset(t.dataset, "test")
    channels, size = model_input_shape(t.dataset)
    x_train, x_test = to_model_input(train.images, channels, size), to_model_input(test.images, channels, size)
    model = create_model(t.model, channels, size, train.num_classes, seed=t.seed)
    shares = split_clients(train.labels, t.clients, "iid", seed=t.seed)
    generator = torch.Generator().manual_seed(t.seed)
    accuracies = []
    for r in range(t.rounds):
        # each client draws E * b of its images; local steps walk through them b at a time
        draw = t.local_steps * t.batch_size
        picks = [share[torch.randperm(len(share), generator=generator)[:draw]] for share in shares]
        clients = [(x_train[idx], train.labels[idx]) for idx in picks]
        delta = defended_round(model, clients, defence, "fedavg", t.local_steps, t.local_lr, t.batch_size, generator)
        with torch.no_grad():
            for name, w in model.named_parameters():
                w -= delta[name]  # w <- w - Delta
        accuracies.append(_accuracy(model, x_test, test.labels))
        if on_round is not None:
            on_round(r + 1, accuracies[-1])
    local_size = min(len(share) for share in shares)
    eps = round_epsilon(defence.dp, t.batch_size, local_size, t.local_steps, t.rounds)
    return TrainingResult(tuple(accuracies), eps)
