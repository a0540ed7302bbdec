"""Victim models: the networks whose gradients a federated client sends to the server.

    create_model("lenet", channels=1, size=28, seed=0)  ->  nn.Module
    train_model(model, images, labels, steps=200)      ->  the same model, trained

Every model takes images (B, C, H, W) in [0, 1] with C in {1, 3}, H = W in {28, 32}, and returns
logits (B, num_classes). The same seed gives the same weights on the same device.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .convnet import ConvNet
from .lenet import LeNet
from .mlp import MLP
from .resnet import ResNet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet": LeNet,  # DLG's sigmoid LeNet, 12 channels
    "convnet": ConvNet,  # ReLU ConvNet, width 16
    "mlp": MLP,  # two hidden layers of 256
    "resnet": ResNet,  # three residual blocks, width 16
}

__all__ = ["MODELS", "create_model", "train_model", "count_parameters"]


def create_model(
    name: str,
    channels: int = 1,
    size: int = 28,
    num_classes: int = 10,
    width: int = 0,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Build victim `name` with weights drawn from `seed`; width 0 keeps the architecture's default."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if size not in (28, 32):
        raise ValueError(f"image size must be 28 or 32 pixels, got {size}")
    kwargs = {"width": width} if width > 0 else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MODELS[name](channels=channels, size=size, num_classes=num_classes, **kwargs)
    return model.to(device)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable entries: the length of the gradient the server sees."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_model(
    model: nn.Module,
    images: torch.Tensor,  # (N, C, H, W)
    labels: torch.Tensor,  # (N,)
    steps: int,
    lr: float = 0.05,
    batch_size: int = 64,
    seed: int = 0,
) -> nn.Module:
    """Train `model` in place with `steps` SGD steps (momentum 0.9) on shuffled mini-batches.

    A trained model leaks differently from a freshly initialised one: its softmax is confident,
    so the last-layer gradient is small for images it already classifies well.
    """
    if steps <= 0:
        return model
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(images), (min(batch_size, len(images)),), generator=generator)
        loss = nn.functional.cross_entropy(model(images[idx].to(device)), labels[idx].to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    model.eval()
    return model
