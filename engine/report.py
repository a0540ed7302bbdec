"""What a finished run leaves on disk: the config it used, its scores, and a picture.

    paths = save_run("runs/example", setup, result)   # config.json, metrics.json, reconstruction.png

The app's download buttons and the command line write the same three things through these functions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .config import Config, to_json
from .experiment import Result, Setup

__all__ = ["run_metrics", "comparison_image", "save_config", "save_run"]

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
    if config.defence.active:
        from .defences import defence_metrics  # Opacus loads only for a defended run

        record.update(defence_metrics(config, setup.leak.update, len(setup.dataset)))
    return {key: _finite_or_none(value) for key, value in record.items()}


def _to_uint8(images: torch.Tensor, scale: int) -> np.ndarray:
    """(n, C, H, W) in [0, 1] -> (n, H*scale, W*scale, C) uint8, upscaled by repeating pixels."""
    pixels = images.detach().cpu().float().nan_to_num(0.0).clamp(0, 1)
    pixels = pixels.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)  # nearest neighbour
    return (pixels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def comparison_image(originals: torch.Tensor, reconstruction: torch.Tensor, columns: int = 8) -> Image.Image:
    """Originals above their reconstructions, `columns` pairs per band, upscaled so small digits are visible.

    Both are (n, C, H, W) in [0, 1] with C = 1 (grey) or 3 (RGB), in matching order; band b holds
    images b*columns .. (b+1)*columns - 1, originals on its top row and reconstructions below.
    """
    if originals.shape != reconstruction.shape or originals.dim() != 4:
        raise ValueError(f"expected two (n, C, H, W) batches of one shape, got {tuple(originals.shape)} "
                         f"and {tuple(reconstruction.shape)}")
    n, c, h, w = originals.shape
    scale = max(1, math.ceil(TILE_PX / h))
    tile_h, tile_w = h * scale, w * scale
    columns = max(1, min(columns, n))
    bands = math.ceil(n / columns)
    width = columns * tile_w + (columns - 1) * GAP_PX
    height = bands * (2 * tile_h + GAP_PX) + (bands - 1) * BAND_GAP_PX
    canvas = np.full((height, width, c), BACKGROUND, dtype=np.uint8)
    for row_offset, images in ((0, originals), (tile_h + GAP_PX, reconstruction)):
        for i, tile in enumerate(_to_uint8(images, scale)):
            band, col = divmod(i, columns)
            top = band * (2 * tile_h + GAP_PX + BAND_GAP_PX) + row_offset
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
    """Write config.json, metrics.json and reconstruction.png into `out`; returns their paths by name."""
    out = Path(out)
    paths = {
        "config": save_config(setup.config, out),
        "metrics": out / "metrics.json",
        "image": out / "reconstruction.png",
    }
    paths["metrics"].write_text(json.dumps(run_metrics(setup, result), indent=2) + "\n")
    comparison_image(result.originals, result.reconstruction).save(paths["image"])
    return paths
