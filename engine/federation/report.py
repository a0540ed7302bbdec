"""What `python -m engine simulate` leaves on disk: rounds.csv, history.json and curves.png.

    paths = save_history("runs/fl", history)     # config.json too, through engine.report.save_config

The curves are drawn with PIL, like the lab's other plots (matplotlib is not a dependency): test
accuracy against the round and against the virtual clock, and epsilon against the round when the
run spends privacy.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from ..report import save_config
from .history import CSV_COLUMNS, History

__all__ = ["save_history", "curves_image", "json_safe"]

PANEL_W, PANEL_H, MARGIN = 380, 240, 60
BLUE, ORANGE, INK, GRID = (31, 119, 180), (255, 127, 14), (0, 0, 0), (220, 220, 220)


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _panel(draw: ImageDraw.ImageDraw, left: int, title: str, xlabel: str, xs: Sequence[float], ys: Sequence[float],
           y_range: tuple[float, float], colour: tuple[int, int, int]) -> None:
    """A line plot of (x, y) with numeric axes; points with a missing or infinite value are left out."""
    font = ImageFont.load_default()
    top, bottom, right = MARGIN, MARGIN + PANEL_H, left + PANEL_W
    pairs = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    x_lo, x_hi = (min(p[0] for p in pairs), max(p[0] for p in pairs)) if pairs else (0.0, 1.0)
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    lo, hi = y_range
    draw.text((left, top - 36), title, fill=INK, font=font)
    for k in range(5):
        y = bottom - k * PANEL_H / 4
        draw.line([(left, y), (right, y)], fill=GRID)
        draw.text((left - 48, y - 6), f"{lo + k * (hi - lo) / 4:.3g}", fill=INK, font=font)
        x = left + k * PANEL_W / 4
        draw.text((x - 10, bottom + 6), f"{x_lo + k * (x_hi - x_lo) / 4:.3g}", fill=INK, font=font)
    draw.text((left + PANEL_W / 2 - 3 * len(xlabel), bottom + 22), xlabel, fill=INK, font=font)
    draw.rectangle([left, top, right, bottom], outline=INK)
    points = [(left + (x - x_lo) / (x_hi - x_lo) * PANEL_W, bottom - (min(max(y, lo), hi) - lo) / (hi - lo) * PANEL_H)
              for x, y in pairs]
    if len(points) > 1:
        draw.line(points, fill=colour, width=2)
    for x, y in points:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)


def curves_image(history: History) -> Image.Image:
    """Accuracy against round and against virtual seconds; epsilon against round when noise is on."""
    records = history.records
    rounds = [0.0] + [float(r.round) for r in records]
    seconds = [0.0] + [r.virtual_seconds for r in records]
    accuracy = [history.initial_accuracy] + [r.accuracy for r in records]
    panels = [("test accuracy against round", "round", rounds, accuracy, (0.0, 1.0), BLUE)]
    if _finite(seconds[1:]):
        panels.append(("test accuracy against the virtual clock", "virtual seconds", seconds, accuracy, (0.0, 1.0), BLUE))
    epsilon = [r.epsilon for r in records]
    if _finite(epsilon):
        top = max(_finite(epsilon)) * 1.1 or 1.0
        panels.append((f"epsilon spent (delta {history.config.defence.dp.delta:g})", "round", rounds[1:], epsilon,
                       (0.0, top), ORANGE))
    image = Image.new("RGB", (len(panels) * (PANEL_W + 2 * MARGIN), PANEL_H + 2 * MARGIN + 20), "white")
    draw = ImageDraw.Draw(image)
    for k, (title, xlabel, xs, ys, y_range, colour) in enumerate(panels):
        _panel(draw, MARGIN + k * (PANEL_W + 2 * MARGIN), title, xlabel, xs, ys, y_range, colour)
    return image


def save_history(out: str | Path, history: History) -> dict[str, Path]:
    """Write config.json, rounds.csv, history.json and curves.png into `out`; returns their paths by name."""
    out = Path(out)
    paths = {"config": save_config(history.config, out), "rounds": out / "rounds.csv",
             "history": out / "history.json", "curves": out / "curves.png"}
    with paths["rounds"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        writer.writerows(history.rows())
    paths["history"].write_text(json.dumps(json_safe(history.to_dict()), indent=1) + "\n")
    curves_image(history).save(paths["curves"])
    return paths


def json_safe(value):
    """NaN and infinity (no clock under Ray) become null: JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
