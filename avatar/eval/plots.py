"""Small report figures: line plots of per-frame metrics (drawn with matplotlib's Agg renderer), and
real-vs-rendered pairs (OpenCV).

Images are [H, W, 3] uint8 RGB like every frame in the project; sizes are (width, height) like OpenCV's.
The plots use `matplotlib.figure.Figure` with its own Agg canvas, never pyplot: no global backend, no
figure registry and no rcParams are touched, so plotting is safe in any process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from avatar.media.images import write_png

# RGB, matplotlib's "tab10": distinct, and readable on white.
PALETTE: tuple[tuple[int, int, int], ...] = tuple(
    (round(r * 255), round(g * 255), round(b * 255)) for r, g, b in matplotlib.colormaps["tab10"].colors
)
FONT = cv2.FONT_HERSHEY_SIMPLEX  # for the labels of `side_by_side`
DPI = 100  # pixels per inch of the plots: sizes in points are pixels * 72 / DPI
LINE_WIDTH_PX = 2.0
MIN_SIZE = (200, 120)


def series_colour(index: int) -> tuple[int, int, int]:
    """The RGB colour of the index-th series of a plot."""
    return PALETTE[index % len(PALETTE)]


def line_plot(
    series: dict[str, np.ndarray],
    *,
    x: np.ndarray | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (900, 360),
) -> np.ndarray:
    """Lines of `series` (name -> [N] values) against `x` ([N], default 0..N-1 per series) with axes, ticks,
    a grid, a legend and a title. Non-finite values (in the series or in x) leave gaps; a finite value
    between two gaps is drawn as a dot. Returns [height, width, 3] uint8 RGB of exactly `size`."""
    width, height = size
    if width < MIN_SIZE[0] or height < MIN_SIZE[1]:
        raise ValueError(f"a plot needs at least {MIN_SIZE[0]}x{MIN_SIZE[1]} pixels, got {width}x{height}")
    lines = {}
    for name, v in series.items():
        values = np.asarray(v, dtype=np.float64).reshape(-1)
        positions = np.arange(len(values), dtype=np.float64) if x is None else np.asarray(x, np.float64)
        positions = positions.reshape(-1)
        if len(positions) != len(values):
            raise ValueError(f"series {name!r} has {len(values)} values but x has {len(positions)}")
        finite = np.isfinite(values) & np.isfinite(positions)
        lines[name] = (np.where(finite, positions, np.nan), np.where(finite, values, np.nan), finite)

    font_size = float(np.clip(min(width / 80, height / 36), 7.0, 11.0))  # points
    line_width = LINE_WIDTH_PX * 72 / DPI
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white", layout="constrained")
    figure.get_layout_engine().set(w_pad=4 / DPI, h_pad=4 / DPI)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.grid(True, color="#e4e4e4", linewidth=0.8)
    axes.set_axisbelow(True)
    axes.tick_params(labelsize=font_size * 0.9)
    axes.xaxis.get_offset_text().set_fontsize(font_size * 0.8)
    axes.yaxis.get_offset_text().set_fontsize(font_size * 0.8)
    axes.set_xmargin(0.0)
    for index, (name, (px, py, finite)) in enumerate(lines.items()):
        colour = np.array(series_colour(index)) / 255
        label = name if finite.any() else f"{name} (no data)"
        axes.plot(px, py, color=colour, linewidth=line_width, label=label, solid_capstyle="round")
        lone = finite & ~np.concatenate([[False], finite[:-1]]) & ~np.concatenate([finite[1:], [False]])
        if lone.any():
            dots = {"linestyle": "none", "marker": "o", "markersize": 2.2 * line_width, "clip_on": False}
            axes.plot(px[lone], py[lone], color=colour, **dots)  # unclipped: whole even at the x limits
    if title:
        axes.set_title(title, fontsize=font_size * 1.2, fontweight="bold")
    if xlabel:
        axes.set_xlabel(xlabel, fontsize=font_size)
    if ylabel:
        axes.set_ylabel(ylabel, fontsize=font_size)
    if lines:
        axes.legend(loc="best", fontsize=font_size * 0.9, framealpha=0.9, handlelength=1.6)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[:, :, :3]
    return _fit(image, width, height)


def line_plot_png(path: Path, series: dict[str, np.ndarray], **options: Any) -> None:
    """`line_plot(series, **options)`, written to `path` as a PNG (atomically: a crash leaves no half-written
    file)."""
    image = line_plot(series, **options)
    write_png(path, image)


def side_by_side(
    left: np.ndarray, right: np.ndarray, labels: tuple[str, str] = ("real", "rendered")
) -> np.ndarray:
    """Two [H, W, 3] uint8 RGB images next to each other, each with its label in its top-left corner; the
    right image is resized to the left's height if they differ. Returns [H, W_left + W_right', 3]."""
    for name, image in (("left", left), ("right", right)):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{name} must be an [H, W, 3] uint8 image, got {image.shape} {image.dtype}")
    if right.shape[0] != left.shape[0]:
        new_width = max(1, round(right.shape[1] * left.shape[0] / right.shape[0]))
        right = cv2.resize(right, (new_width, left.shape[0]), interpolation=cv2.INTER_AREA)
    pair = np.ascontiguousarray(np.hstack([left, right]))
    text_scale = max(0.4, left.shape[0] / 900)
    for label, x0 in zip(labels, (0, left.shape[1])):
        if label:
            _boxed_label(pair, label, x0, text_scale)
    return pair


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """A copy of `image` cropped or padded with white to exactly width x height (the Agg canvas can come out
    a pixel short when width / DPI is not exact in floating point)."""
    fitted = np.full((height, width, 3), 255, np.uint8)
    h, w = min(height, image.shape[0]), min(width, image.shape[1])
    fitted[:h, :w] = image[:h, :w]
    return fitted


def _boxed_label(image: np.ndarray, text: str, x0: int, scale: float) -> None:
    """White text on a dark box in the top-left corner of the image column starting at x0."""
    thickness = 1 if scale < 0.7 else 2
    (text_width, text_height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    pad = max(3, int(round(4 * scale)))
    cv2.rectangle(
        image, (x0, 0), (x0 + text_width + 2 * pad, text_height + baseline + 2 * pad), (20, 20, 20), -1
    )
    cv2.putText(
        image, text, (x0 + pad, pad + text_height), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA
    )
