"""Where tensors live and how runs are made repeatable: device choice, CPU threads, seeds."""

from __future__ import annotations

import random

import numpy as np
import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu'; 'cuda' (ValueError when CUDA is not available)."""
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available here; use 'cpu' or 'auto'")
    return torch.device(name)


def set_threads(n: int) -> int:
    """Set the number of CPU threads torch uses for intra-op work; returns the previous number."""
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    return previous


def seeded_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh random generator on `device`, seeded with `seed`: pass it to torch.rand(..., generator=g)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def seed_everything(seed: int) -> None:
    """Seed torch's global generators (CPU and every CUDA device), Python's `random` and NumPy's."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
