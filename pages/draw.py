"""Drawing helpers shared by the pages: image strips and charts. Not a page; no maths, only display."""

from __future__ import annotations

from typing import Optional, Sequence

import altair as alt
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


def _scale(values: pd.Series, log: bool) -> alt.Scale:
    return alt.Scale(type="log", domainMin=_floor(values)) if log else alt.Scale()


def _log_base(values: pd.Series, log: bool) -> dict:
    return {"y2": alt.datum(_floor(values))} if log else {}


def bars(values: dict[str, float], x_title: str, y_title: str, log: bool = False, height: int = 220,
         highlight: Optional[str] = None) -> None:
    """A bar chart of named values (e.g. per-layer norms)."""
    frame = pd.DataFrame({"name": list(values), "value": list(values.values())})
    color = (alt.condition(alt.datum.name == highlight, alt.value("#d62728"), alt.value("#1f77b4"))
             if highlight else alt.value("#1f77b4"))
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X("name:N", sort=None, title=x_title, axis=alt.Axis(labelAngle=-30)),
        y=alt.Y("value:Q", title=y_title, scale=_scale(frame["value"], log)),
        color=color,
        tooltip=["name", alt.Tooltip("value:Q", format=".3g")],
        **_log_base(frame["value"], log),
    ).properties(height=height)
    st.altair_chart(chart, width="stretch")


def grouped_bars(frame: pd.DataFrame, x: str, y: str, group: str, y_title: str, log: bool = False,
                 height: int = 240) -> None:
    """Bars of `y` per `x`, side by side per `group` (a tidy data frame)."""
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X(f"{x}:N", sort=None, title=None, axis=alt.Axis(labelAngle=-30)),
        xOffset=f"{group}:N",
        y=alt.Y(f"{y}:Q", title=y_title, scale=_scale(frame[y], log)),
        **_log_base(frame[y], log),
        color=alt.Color(f"{group}:N", title=None, legend=alt.Legend(orient="top")),
        tooltip=[x, group, alt.Tooltip(f"{y}:Q", format=".3g")],
    ).properties(height=height)
    st.altair_chart(chart, width="stretch")


def curve(frame: pd.DataFrame, x: str, y: str, title: str, log: bool = False, height: int = 200,
          color: Optional[str] = None, rule: Optional[float] = None, ordinal: bool = False) -> None:
    """A line chart (optionally log-scaled, optionally one line per `color`, optionally a horizontal
    rule); `ordinal` spaces the x values evenly (e.g. batch sizes 1, 2, 4, 8)."""
    scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
    x_axis = alt.X(f"{x}:O", title=x, axis=alt.Axis(labelAngle=0)) if ordinal else alt.X(f"{x}:Q", title=x)
    encoding = dict(x=x_axis, y=alt.Y(f"{y}:Q", title=title, scale=scale),
                    tooltip=[x, alt.Tooltip(f"{y}:Q", format=".3g")])
    if color:
        encoding["color"] = alt.Color(f"{color}:N", title=None, legend=alt.Legend(orient="top"))
    chart = alt.Chart(frame).mark_line(point=len(frame) < 30).encode(**encoding)
    if rule is not None:
        line = alt.Chart(pd.DataFrame({"y": [rule]})).mark_rule(strokeDash=[4, 4], color="grey")
        chart = chart + line.encode(y="y:Q")
    st.altair_chart(chart.properties(height=height), width="stretch")


def heatmap(matrix: np.ndarray, rows: Sequence[str], x_title: str, y_title: str, height: int = 260) -> None:
    """A diverging heat map of a (rows, columns) array, centred on zero (blue negative, red positive)."""
    r, c = matrix.shape
    frame = pd.DataFrame({
        "row": np.repeat(np.asarray(rows, dtype=object), c),
        "column": np.tile(np.arange(c), r),
        "value": matrix.reshape(-1),
    })
    limit = float(np.abs(matrix).max()) or 1.0
    chart = alt.Chart(frame).mark_rect().encode(
        x=alt.X("column:O", title=x_title, axis=alt.Axis(labels=False, ticks=False)),
        y=alt.Y("row:N", sort=list(rows), title=y_title),
        color=alt.Color("value:Q", scale=alt.Scale(scheme="redblue", domain=[-limit, limit], reverse=True),
                        title="value"),
        tooltip=["row", "column", alt.Tooltip("value:Q", format=".3g")],
    ).properties(height=height)
    st.altair_chart(chart, width="stretch")


def histogram(counts: np.ndarray, classes: Sequence[str], height: int = 220) -> None:
    """Stacked bars: images of each class (colour) held by each client (bar)."""
    k, c = counts.shape
    frame = pd.DataFrame({
        "client": np.repeat([f"client {i + 1}" for i in range(k)], c),
        "class": np.tile(np.asarray(classes, dtype=object), k),
        "images": counts.reshape(-1),
    })
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X("client:N", sort=None, title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("images:Q", title="images held"),
        color=alt.Color("class:N", sort=list(classes), title="class", scale=alt.Scale(scheme="tableau10")),
        tooltip=["client", "class", "images"],
    ).properties(height=height)
    st.altair_chart(chart, width="stretch")



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
