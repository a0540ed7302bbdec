"""What a client can check before it trains on a model the server sent.

    verdict = vet_model(received, promised, my_images)    # a Vetting: its findings, refused or not
    if verdict.refused: ...                               # the client sends nothing this round

The client knows the architecture it was promised and holds its own images; it looks for the
traces the active attacks of this package leave (Fowl et al. 2022, Sec. 6; Boenisch et al. 2023,
Sec. 7 discuss such checks):

    architecture     a layer the promise does not have, or one larger than promised
    identical_rows   many rows of one weight nearly parallel: |cos(W_i, W_j)| > 0.95      # Eq. (9)
    sorted_biases    a bias vector that rises (or falls) along its rows like quantiles
    rarely_active    most units of a hidden layer switched on by at most one of the client's
                     images (a trap)

Each is tuned to pass every honest victim model of the lab, fresh and trained (bench/dishonest.py
counts the false alarms). None is a proof: a server that knows the checks can pass them
(disguise.py); only noise the client adds itself (local DP) protects without spotting the trick.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence, Union

import torch
from torch import nn

__all__ = ["CHECKS", "Finding", "Vetting", "architecture", "vet_model", "vet_clients"]

CHECKS = ("architecture", "identical_rows", "sorted_biases", "rarely_active")
PARALLEL = 0.95  # |cos| above which two rows count as the same measurement
PARALLEL_SHARE = 0.05  # share of a weight's rows with a parallel partner that is flagged
MIN_FAN_IN = 64  # rows shorter than this are too short for the cosine to mean much
MAX_ROWS = 2048  # rows of one weight compared pairwise (a larger layer is sampled evenly)
SORTED_SHARE = 0.95  # share of neighbouring biases in order that is flagged
MIN_BIASES = 16
RARE_SHARE = 0.5  # share of a layer's units that fire for at most one image that is flagged

Shapes = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Finding:
    """One check that failed, where, and what it saw."""

    check: str
    where: str  # the parameter or layer
    detail: str

    def __str__(self) -> str:
        return f"{self.check} at {self.where}: {self.detail}"


@dataclass(frozen=True)
class Vetting:
    """A client's verdict on the model it received."""

    findings: tuple[Finding, ...]
    checks: tuple[str, ...] = CHECKS

    @property
    def refused(self) -> bool:
        return bool(self.findings)

    def failed(self, check: str) -> bool:
        return any(f.check == check for f in self.findings)

    def __repr__(self) -> str:
        if not self.refused:
            return f"Vetting(accepted: passed {', '.join(self.checks)})"
        return f"Vetting(refused: {'; '.join(str(f) for f in self.findings)})"


def architecture(model: nn.Module) -> Shapes:
    """The promise a client can hold a model to: the shapes of its parameters, in order."""
    return tuple(tuple(p.shape) for p in model.parameters())


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def check_architecture(received: nn.Module, promised: Shapes) -> list[Finding]:
    """Parameters the promise does not have (an extra or oversized layer), or lacks."""
    got, want = Counter(architecture(received)), Counter(promised)
    extra, missing = got - want, want - got
    findings = []
    if extra:
        numbers = sum(torch.Size(s).numel() * c for s, c in extra.items())
        findings.append(Finding("architecture", "model", f"{sum(extra.values())} parameter tensor(s) not promised "
                                f"({', '.join(_shape(s) for s in extra)}): {numbers:,} numbers"))
    if missing:
        findings.append(Finding("architecture", "model", f"promised tensor(s) missing ({', '.join(_shape(s) for s in missing)})"))
    return findings


def check_identical_rows(received: nn.Module) -> list[Finding]:
    """Eq. (9): weights whose rows repeat one direction (the imprint's shared measurement, and its
    second layer's shared column)."""
    findings = []
    for name, w in received.named_parameters():
        if w.dim() < 2 or w[0].numel() < MIN_FAN_IN or len(w) < 8:
            continue
        rows = w.detach().flatten(1)
        if len(rows) > MAX_ROWS:  # an evenly spaced sample keeps the (k, k) cosines in memory
            rows = rows[torch.linspace(0, len(rows) - 1, MAX_ROWS, device=rows.device).long()]
        rows = nn.functional.normalize(rows.double(), dim=1)  # (k, fan_in)
        cos = (rows @ rows.T).abs().fill_diagonal_(0)  # (k, k)
        share = float((cos.max(1).values > PARALLEL).double().mean())
        if share > PARALLEL_SHARE:
            sampled = f" (an even sample of {MAX_ROWS})" if len(w) > MAX_ROWS else ""
            findings.append(Finding("identical_rows", name, f"{share:.0%} of its {len(w)} rows{sampled} have a "
                                    "near-parallel twin"))
    return findings


def check_sorted_biases(received: nn.Module) -> list[Finding]:
    """Bias vectors in order along their rows: thresholds set at quantiles, one per row."""
    findings = []
    for name, b in received.named_parameters():
        if b.dim() != 1 or len(b) < MIN_BIASES or not name.endswith("bias"):
            continue
        step = b.detach()[1:] - b.detach()[:-1]
        rising, falling = float((step > 0).double().mean()), float((step < 0).double().mean())
        if max(rising, falling) >= SORTED_SHARE:
            findings.append(Finding("sorted_biases", name, f"{max(rising, falling):.0%} of its {len(b)} biases "
                                    f"{'rise' if rising > falling else 'fall'} in order"))
    return findings


def check_rarely_active(received: nn.Module, images: torch.Tensor) -> list[Finding]:
    """Fully connected layers reading the image itself whose units mostly fire (pre-activation > 0)
    for at most one of the client's images (one in 20 for large batches)."""
    n = images[0].numel()
    linears = [(name, m) for name, m in received.named_modules() if isinstance(m, nn.Linear) and m.in_features == n]
    counts: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: counts.__setitem__(name, (out > 0).sum(0)))
             for name, m in linears]
    try:
        with torch.no_grad():
            received(images)
    finally:
        for h in hooks:
            h.remove()
    rare_at = max(1, len(images) // 20)
    findings = []
    for name, fired in counts.items():
        share = float((fired <= rare_at).double().mean())
        if share > RARE_SHARE:
            findings.append(Finding("rarely_active", name, f"{share:.0%} of its {len(fired)} units fire for at most "
                                    f"{rare_at} of the client's {len(images)} images"))
    return findings


def vet_model(
    received: nn.Module, promised: Union[nn.Module, Shapes], images: torch.Tensor, checks: Sequence[str] = CHECKS
) -> Vetting:
    """Run `checks` on `received` against the `promised` architecture (a model or its shapes) and
    the client's own `images` (B, C, H, W)."""
    unknown = set(checks) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(sorted(unknown))}; known checks: {', '.join(CHECKS)}")
    promise = architecture(promised) if isinstance(promised, nn.Module) else tuple(promised)
    device = next(received.parameters()).device
    findings: list[Finding] = []
    if "architecture" in checks:
        findings += check_architecture(received, promise)
    if "identical_rows" in checks:
        findings += check_identical_rows(received)
    if "sorted_biases" in checks:
        findings += check_sorted_biases(received)
    if "rarely_active" in checks:
        findings += check_rarely_active(received, images.to(device))
    return Vetting(tuple(findings), tuple(checks))


def vet_clients(
    received: nn.Module, promised: Union[nn.Module, Shapes], client_images: Sequence[torch.Tensor],
    checks: Sequence[str] = CHECKS,
) -> list[Vetting]:
    """Every client's verdict on the same model, each with its own images; the checks on the weights
    alone give every client the same answer and run once."""
    on_weights = [c for c in checks if c != "rarely_active"]
    shared = vet_model(received, promised, client_images[0], on_weights).findings
    if "rarely_active" not in checks:
        return [Vetting(shared, tuple(checks)) for _ in client_images]
    device = next(received.parameters()).device
    return [Vetting(shared + tuple(check_rarely_active(received, x.to(device))), tuple(checks)) for x in client_images]
