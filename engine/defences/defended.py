"""Put a defended update back into a Leak, so an attack runs on what the server sees after the defence."""

from __future__ import annotations

from dataclasses import replace

from ..leakage import Leak, Params

__all__ = ["with_update"]


def with_update(leak: Leak, new_update: Params) -> Leak:
    """The same round with the server seeing `new_update` instead; names and shapes must match."""
    missing = set(leak.update) ^ set(new_update)
    if missing:
        raise ValueError(f"the new update must have the leak's parameter names; differing: {sorted(missing)}")
    for name, u in leak.update.items():
        if new_update[name].shape != u.shape:
            raise ValueError(f"{name}: shape {tuple(new_update[name].shape)} != the leak's {tuple(u.shape)}")
    return replace(leak, update={name: t.detach() for name, t in new_update.items()})
