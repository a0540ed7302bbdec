"""Drawing helpers shared by the pages: image strips and charts. Not a page; no maths, only display."""

from __future__ import annotations

import json
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import streamlit as st
import torch

PIXELS = 84  # on-screen size of one 28-pixel image: 3x, crisp (nearest neighbour)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [0, 1] -> (B, H, W, C) uint8, for display and film frames."""
    return (images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _enlarge(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) uint8 -> about (size, size) by whole-pixel repetition; grey drops its channel axis."""
    factor = max(1, size // image.shape[0])
    big = image.repeat(factor, axis=0).repeat(factor, axis=1)
    return big[..., 0] if big.shape[-1] == 1 else big


def strip(images: np.ndarray | torch.Tensor, captions: Optional[Sequence[str]] = None, size: int = PIXELS,
          limit: int = 16) -> None:
    """A row of images (B, H, W, C) uint8 or a tensor batch, with optional captions."""
    if isinstance(images, torch.Tensor):
        images = to_uint8(images)
    shown = [_enlarge(im, size) for im in images[:limit]]
    caps = list(captions[:limit]) if captions is not None else None
    st.image(shown, caption=caps, width=size)
    if len(images) > limit:
        st.caption(f"... and {len(images) - limit} more")


HEAT = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=float)  # inferno


def heat_strip(values: torch.Tensor, captions: Optional[Sequence[str]] = None, size: int = PIXELS,
               limit: int = 16) -> float:
    """A row of heat maps of non-negative values (B, C, H, W), channels averaged, dark = 0 and bright =
    the largest value of the whole batch (so images compare with each other). Returns that largest value."""
    grey = values.detach().cpu().float().mean(dim=1).numpy()  # (B, H, W)
    top = float(grey.max()) if grey.size else 0.0
    level = grey / top if top > 0 else grey
    stops = np.linspace(0, 1, len(HEAT))
    rgb = np.stack([np.interp(level, stops, HEAT[:, k]) for k in range(3)], axis=-1)  # (B, H, W, 3)
    strip(rgb.round().astype(np.uint8), captions, size, limit)
    return top


def _floor(values: pd.Series) -> float:
    """A baseline below the smallest positive value: log-scaled bars need one (log 0 is -inf)."""
    positive = values[values > 0]
    return float(positive.min()) / 3 if len(positive) else 1e-12


# The charts are Vega-Lite specs written as dicts (what Altair would emit, without its schema checks:
# 10-40 ms of CPU per chart and rerun). The data travels apart from the spec, so a rerun that only
# changes the numbers leaves the spec as it was and the browser updates the chart in place instead of
# building it again. Log-scaled bars carry their baseline as a data column ("floor") for the same reason.


def _show(frame: pd.DataFrame, spec: dict) -> None:
    st.vega_lite_chart(frame, spec, width="stretch")


def _quantity(field: str, title: Optional[str], log: bool = False) -> dict:
    scale = {"type": "log", "nice": False} if log else {}  # log: from the floor (y2) to the largest value
    return {"field": field, "type": "quantitative", "title": title, "scale": scale}


def _tip(field: str) -> dict:
    return {"field": field, "type": "quantitative", "format": ".3g"}


def _with_floor(frame: pd.DataFrame, y: str, encoding: dict, log: bool) -> pd.DataFrame:
    """Log-scaled bars start at a floor below the smallest positive value (a data column, so the spec
    does not change with the numbers)."""
    if not log:
        return frame
    encoding["y2"] = {"field": "floor"}
    return frame.assign(floor=_floor(frame[y]))


def bars(values: dict[str, float], x_title: str, y_title: str, log: bool = False, height: int = 220,
         highlight: Optional[str] = None) -> None:
    """A bar chart of named values (e.g. per-layer norms)."""
    frame = pd.DataFrame({"name": list(values), "value": list(values.values())})
    color = ({"condition": {"test": f"datum.name === {json.dumps(highlight)}", "value": "#d62728"},
              "value": "#1f77b4"} if highlight else {"value": "#1f77b4"})
    encoding = {
        "x": {"field": "name", "type": "nominal", "sort": None, "title": x_title, "axis": {"labelAngle": -30}},
        "y": _quantity("value", y_title, log),
        "color": color,
        "tooltip": [{"field": "name", "type": "nominal"}, _tip("value")],
    }
    frame = _with_floor(frame, "value", encoding, log)
    _show(frame, {"mark": {"type": "bar"}, "encoding": encoding, "height": height})


def grouped_bars(frame: pd.DataFrame, x: str, y: str, group: str, y_title: str, log: bool = False,
                 height: int = 240) -> None:
    """Bars of `y` per `x`, side by side per `group` (a tidy data frame)."""
    encoding = {
        "x": {"field": x, "type": "nominal", "sort": None, "title": None, "axis": {"labelAngle": -30}},
        "xOffset": {"field": group, "type": "nominal"},
        "y": _quantity(y, y_title, log),
        "color": {"field": group, "type": "nominal", "title": None, "legend": {"orient": "top"}},
        "tooltip": [{"field": x, "type": "nominal"}, {"field": group, "type": "nominal"}, _tip(y)],
    }
    frame = _with_floor(frame, y, encoding, log)
    _show(frame, {"mark": {"type": "bar"}, "encoding": encoding, "height": height})


def curve(frame: pd.DataFrame, x: str, y: str, title: str, log: bool = False, height: int = 200,
          color: Optional[str] = None, rule: Optional[float] = None, ordinal: bool = False) -> None:
    """A line chart (optionally log-scaled, optionally one line per `color`, optionally a horizontal
    rule); `ordinal` spaces the x values evenly (e.g. batch sizes 1, 2, 4, 8)."""
    x_axis = ({"field": x, "type": "ordinal", "title": x, "axis": {"labelAngle": 0}} if ordinal
              else {"field": x, "type": "quantitative", "title": x})
    encoding = {"x": x_axis, "y": {"field": y, "type": "quantitative", "title": title,
                                   "scale": {"type": "log"} if log else {"zero": False}},
                "tooltip": [{"field": x, "type": _kind(frame[x])}, _tip(y)]}
    if color:
        encoding["color"] = {"field": color, "type": "nominal", "title": None, "legend": {"orient": "top"}}
    line = {"mark": {"type": "line", "point": len(frame) < 30}, "encoding": encoding}
    if rule is None:
        _show(frame, {**line, "height": height})
        return
    dashed = {"data": {"values": [{}]}, "mark": {"type": "rule", "strokeDash": [4, 4], "color": "grey"},
              "encoding": {"y": {"datum": rule, "type": "quantitative"}}}
    _show(frame, {"layer": [line, dashed], "height": height})


def _kind(values: pd.Series) -> str:
    return "quantitative" if pd.api.types.is_numeric_dtype(values) else "nominal"


def heatmap(matrix: np.ndarray, rows: Sequence[str], x_title: str, y_title: str, height: int = 260) -> None:
    """A diverging heat map of a (rows, columns) array, centred on zero (blue negative, red positive).
    The colour is the value over the largest magnitude (so the scale, and the spec, stay the same
    when the numbers change); the tooltip gives the value itself."""
    r, c = matrix.shape
    limit = float(np.abs(matrix).max()) or 1.0
    frame = pd.DataFrame({
        "row": np.repeat(np.asarray(rows, dtype=object), c),
        "column": np.tile(np.arange(c), r),
        "value": matrix.reshape(-1),
        "shade": matrix.reshape(-1) / limit,
    })
    spec = {"mark": {"type": "rect"}, "height": height, "encoding": {
        "x": {"field": "column", "type": "ordinal", "title": x_title, "axis": {"labels": False, "ticks": False}},
        "y": {"field": "row", "type": "nominal", "sort": list(rows), "title": y_title},
        "color": {"field": "shade", "type": "quantitative", "title": ["value", "÷ largest"],
                  "scale": {"scheme": "redblue", "domain": [-1, 1], "reverse": True}},
        "tooltip": [{"field": "row", "type": "nominal"}, {"field": "column", "type": "quantitative"}, _tip("value")],
    }}
    _show(frame, spec)


def histogram(counts: np.ndarray, classes: Sequence[str], height: int = 220) -> None:
    """Stacked bars: images of each class (colour) held by each client (bar)."""
    k, c = counts.shape
    frame = pd.DataFrame({
        "client": np.repeat([f"client {i + 1}" for i in range(k)], c),
        "class": np.tile(np.asarray(classes, dtype=object), k),
        "images": counts.reshape(-1),
    })
    spec = {"mark": {"type": "bar"}, "height": height, "encoding": {
        "x": {"field": "client", "type": "nominal", "sort": None, "title": None, "axis": {"labelAngle": 0}},
        "y": {"field": "images", "type": "quantitative", "title": "images held"},
        "color": {"field": "class", "type": "nominal", "sort": list(classes), "title": "class",
                  "scale": {"scheme": "tableau10"}},
        "tooltip": [{"field": "client", "type": "nominal"}, {"field": "class", "type": "nominal"},
                    {"field": "images", "type": "quantitative"}],
    }}
    _show(frame, spec)



def jobs_side_by_side(setup, jobs: Sequence) -> None:
    """The originals, then one column per attack job: its latest frame, PSNR, iteration and state."""
    names = [setup.dataset.classes[int(y)] for y in setup.labels]
    strip(setup.images, ["original " + n for n in names], size=56)
    for col, job in zip(st.columns(max(1, len(jobs))), jobs):
        with col:
            frame = job.frames[-1] if job.frames else None
            psnr = "-" if frame is None else f"{frame.psnr:.1f} dB"
            st.markdown(f"**{job.title}**: PSNR **{psnr}**, iteration {job.iteration}, {job.compute_s:.1f} s ({job.state})")
            if frame is not None:
                strip(frame.images, size=56)
            if job.error:
                st.error(job.error)


PHASES = {"download": "#9ecae1", "compute": "#3182bd", "upload": "#31a354", "dropped": "#bdbdbd"}


def timeline(frame: pd.DataFrame, deadline: float, row: int = 20) -> None:
    """One row per client of a federated round: its download, compute and upload as bars from `start`
    to `end` seconds; dropped clients grey; stragglers faded; the round's deadline as a red rule.
    `frame` has the columns client, phase, start, end, status."""
    encoding = {
        "y": {"field": "client", "type": "nominal", "sort": None, "title": None},
        "x": {"field": "start", "type": "quantitative", "title": "seconds since the round began"},
        "x2": {"field": "end"},
        "color": {"field": "phase", "type": "nominal", "title": None, "legend": {"orient": "top"},
                  "scale": {"domain": list(PHASES), "range": list(PHASES.values())}},
        "opacity": {"condition": {"test": "datum.status === 'replied'", "value": 1.0}, "value": 0.35},
        "tooltip": [{"field": "client", "type": "nominal"}, {"field": "status", "type": "nominal"},
                    {"field": "phase", "type": "nominal"}, _tip("start"), _tip("end")],
    }
    bars_layer = {"mark": {"type": "bar"}, "encoding": encoding}
    rule = {"data": {"values": [{}]}, "mark": {"type": "rule", "color": "#d62728", "strokeDash": [6, 3], "size": 2},
            "encoding": {"x": {"datum": deadline, "type": "quantitative"}}}
    _show(frame, {"layer": [bars_layer, rule], "height": {"step": row}})
