"""What a finished run leaves on disk: the config it used, its scores, and a picture.

    paths = save_run("runs/example", setup, result)   # config.json, metrics.json, reconstruction.png
    paths = save_sweep("runs/noise", "defence.dp.noise_multiplier", points)   # sweep.csv, sweep.png

The app's download buttons and the command line write the same three things through these functions.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .config import Config, to_json
from .experiment import Result, Setup, prior_check

__all__ = ["run_metrics", "comparison_image", "save_config", "save_run", "sweep_image", "save_sweep"]

TILE_PX = 96  # images are upscaled (nearest neighbour) to at least this many pixels high
GAP_PX = 4  # between tiles
BAND_GAP_PX = 16  # between one band (originals over reconstructions) and the next
BACKGROUND = 255  # white


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: such floats become null (nested lists too)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def run_metrics(setup: Setup, result: Result) -> dict[str, Any]:
    """What `metrics.json` holds: the result's scores plus what leaked and what the attacker had to find."""
    config = setup.config
    record = {
        **result.metrics(),
        "dataset": config.data.dataset,
        "batch_size": config.data.batch_size,
        "clients": len(setup.clients),
        "images": setup.leak.num_images,
        "attack": config.attack.name,
        "protocol": config.leak.protocol,
        "observed": setup.leak.observed,  # numbers in the update the server sees
        "unknowns": setup.leak.unknowns,  # pixels and labels the attacker must find
        "true_labels": result.true_labels.tolist(),
        "labels": result.labels.tolist(),  # the attacker's, matched to the originals' order
        "device": str(setup.device),
    }
    if config.leak.server != "honest" or config.leak.vet:  # a dishonest server's round
        from .server import server_metrics

        record.update(server_metrics(config, setup.model, setup.leak, result.evaluation.per_image_psnr))
    if config.defence.active:
        from .defences import defence_metrics  # Opacus loads only for a defended run

        record.update(defence_metrics(config, setup.leak.update, len(setup.dataset)))
    return {key: _finite_or_none(value) for key, value in record.items()}


def _to_uint8(images: torch.Tensor, scale: int) -> np.ndarray:
    """(n, C, H, W) in [0, 1] -> (n, H*scale, W*scale, C) uint8, upscaled by repeating pixels."""
    pixels = images.detach().cpu().float().nan_to_num(0.0).clamp(0, 1)
    pixels = pixels.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)  # nearest neighbour
    return (pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def comparison_image(originals: torch.Tensor, reconstruction: torch.Tensor, columns: int = 8,
                     *more: torch.Tensor) -> Image.Image:
    """Originals above their reconstructions, `columns` pairs per band, upscaled so small digits are visible.

    Both are (n, C, H, W) in [0, 1] with C = 1 (grey) or 3 (RGB), in matching order; band b holds
    images b*columns .. (b+1)*columns - 1, originals on its top row and reconstructions below, then
    a row for each batch in `more` (the prior attack adds its spread and the nearest training images).
    """
    rows = (originals, reconstruction, *more)
    if any(r.shape != originals.shape for r in rows) or originals.dim() != 4:
        raise ValueError(f"expected (n, C, H, W) batches of one shape, got {[tuple(r.shape) for r in rows]}")
    n, c, h, w = originals.shape
    scale = max(1, math.ceil(TILE_PX / h))
    tile_h, tile_w = h * scale, w * scale
    columns = max(1, min(columns, n))
    bands = math.ceil(n / columns)
    band_h = len(rows) * tile_h + (len(rows) - 1) * GAP_PX
    width = columns * tile_w + (columns - 1) * GAP_PX
    height = bands * band_h + (bands - 1) * BAND_GAP_PX
    canvas = np.full((height, width, c), BACKGROUND, dtype=np.uint8)
    for r, images in enumerate(rows):
        row_offset = r * (tile_h + GAP_PX)
        for i, tile in enumerate(_to_uint8(images, scale)):
            band, col = divmod(i, columns)
            top = band * (band_h + BAND_GAP_PX) + row_offset
            left = col * (tile_w + GAP_PX)
            canvas[top : top + tile_h, left : left + tile_w] = tile
    return Image.fromarray(canvas[:, :, 0] if c == 1 else canvas)  # mode L (grey) or RGB


def save_config(config: Config, out: str | Path) -> Path:
    """Write `out/config.json` (the exact config, loadable by `load_config` and `python -m engine run`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.json"
    path.write_text(to_json(config) + "\n")
    return path


def save_run(out: str | Path, setup: Setup, result: Result) -> dict[str, Path]:
    """Write config.json, metrics.json and reconstruction.png into `out`; returns their paths by name.
    A prior attack also writes prior.png: originals, MAP reconstructions, their per-pixel spread
    (white = the restarts disagree; only with 2+ restarts) and the nearest image of the prior's
    training sample."""
    out = Path(out)
    paths = {
        "config": save_config(setup.config, out),
        "metrics": out / "metrics.json",
        "image": out / "reconstruction.png",
    }
    record = run_metrics(setup, result)
    comparison_image(result.originals, result.reconstruction).save(paths["image"])
    if setup.config.attack.name in ("vae_prior", "diffusion_prior"):
        check = prior_check(setup, result)
        record.update({key: value for key, value in check.items() if key != "nearest"})
        spread = result.spread
        rows = [check["nearest"]]
        if spread is not None and float(spread.max()) > 0:  # one restart has no spread: no black row
            rows.insert(0, (spread * 4).clamp(0, 1))
        paths["prior"] = out / "prior.png"
        comparison_image(result.originals, result.reconstruction, 8, *rows).save(paths["prior"])
    paths["metrics"].write_text(json.dumps(record, indent=2) + "\n")
    return paths


# -----------------------------------------------------------------------------
# sweeps: a CSV and a line plot drawn with PIL (matplotlib is not a dependency)

PANEL_W, PANEL_H, MARGIN = 420, 260, 56  # one panel's plotting area and the space around it
LINE = (31, 119, 180)  # blue
INK, GRID = (0, 0, 0), (220, 220, 220)


def _panel(draw: ImageDraw.ImageDraw, left: int, title: str, labels: Sequence[str], ys: Sequence[Optional[float]],
           lo: float, hi: float, notes: Sequence[str]) -> None:
    """One line plot: evenly spaced x positions labelled by the swept values, y from lo to hi."""
    font = ImageFont.load_default()
    top, bottom, right = MARGIN, MARGIN + PANEL_H, left + PANEL_W
    draw.text((left, top - 36), title, fill=INK, font=font)
    for k in range(5):  # y grid and its labels
        y = bottom - k * PANEL_H / 4
        draw.line([(left, y), (right, y)], fill=GRID)
        draw.text((left - 44, y - 6), f"{lo + k * (hi - lo) / 4:.3g}", fill=INK, font=font)
    draw.rectangle([left, top, right, bottom], outline=INK)
    step = PANEL_W / max(1, len(labels) - 1) if len(labels) > 1 else 0
    points = []
    for i, (label, value, note) in enumerate(zip(labels, ys, notes)):
        x = left + (i * step if len(labels) > 1 else PANEL_W / 2)
        draw.text((x - 3 * len(label), bottom + 6), label, fill=INK, font=font)
        draw.text((x - 3 * len(note), bottom + 20), note, fill=INK, font=font)
        if value is not None and math.isfinite(value):
            points.append((x, bottom - (min(max(value, lo), hi) - lo) / (hi - lo) * PANEL_H))
    if len(points) > 1:
        draw.line(points, fill=LINE, width=2)
    for x, y in points:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=LINE)


def sweep_image(param: str, points: Sequence[Any]) -> Image.Image:
    """PSNR of the attack against the swept value (epsilon written under each), and test accuracy
    beside it when the sweep trained models. `points` are `SweepPoint`s."""
    labels = [p.value for p in points]
    eps = [f"eps {p.epsilon:.3g}" if p.epsilon is not None else "" for p in points]
    top = max([40.0] + [p.psnr for p in points if math.isfinite(p.psnr)])
    panels = [("attack PSNR (dB)", [p.psnr for p in points], 0.0, top)]
    if any(p.accuracy is not None for p in points):
        panels.append(("test accuracy after FedAvg", [p.accuracy for p in points], 0.0, 1.0))
    width = len(panels) * (PANEL_W + 2 * MARGIN)
    image = Image.new("RGB", (width, PANEL_H + 2 * MARGIN + 24), "white")
    draw = ImageDraw.Draw(image)
    for k, (title, ys, lo, hi) in enumerate(panels):
        _panel(draw, MARGIN + k * (PANEL_W + 2 * MARGIN), f"{title} against {param}", labels, ys, lo, hi, eps)
    return image


def save_sweep(out: str | Path, param: str, points: Sequence[Any]) -> dict[str, Path]:
    """Write `out/sweep.csv` (one row per value) and `out/sweep.png`; returns their paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "sweep.csv", "plot": out / "sweep.png"}
    rows = [{"param": param, **p.row()} for p in points]
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["param"])
        writer.writeheader()
        writer.writerows(rows)
    sweep_image(param, points).save(paths["plot"])
    return paths
