"""Small report figures drawn with OpenCV alone: line plots of per-frame metrics, and real-vs-rendered pairs.

Images are [H, W, 3] uint8 RGB like every frame in the project; sizes are (width, height) like OpenCV's.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from avatar.atomic import write_bytes

# RGB, matplotlib's "tab10": distinct, and readable on white.
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_RGB = (30, 30, 30)
GRID_RGB = (228, 228, 228)
AXES_RGB = (90, 90, 90)
SUBPIXEL_BITS = 3  # line vertices are placed to 1/8 pixel


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
    a grid, a legend and a title. Non-finite values leave gaps. Returns [height, width, 3] uint8 RGB."""
    width, height = size
    if width < 200 or height < 120:
        raise ValueError(f"a plot needs at least 200x120 pixels, got {width}x{height}")
    values = {name: np.asarray(v, dtype=np.float64).reshape(-1) for name, v in series.items()}
    positions = {}
    for name, v in values.items():
        positions[name] = np.arange(len(v), dtype=np.float64) if x is None else np.asarray(x, np.float64)
        if len(positions[name]) != len(v):
            raise ValueError(f"series {name!r} has {len(v)} values but x has {len(positions[name])}")

    scale = max(0.4, min(0.6, height / 720))
    tick_scale, label_scale, title_scale = scale, scale * 1.1, scale * 1.3
    text_height = cv2.getTextSize("0", FONT, tick_scale, 1)[0][1]
    x_range = _x_range(positions, values)
    y_range = _y_range(values)
    y_ticks, y_step = _nice_ticks(*y_range, target=max(2, (height - 80) // 45))
    y_tick_labels = _tick_labels(y_ticks, y_step)
    widest_y_label = max((cv2.getTextSize(t, FONT, tick_scale, 1)[0][0] for t in y_tick_labels), default=0)

    left = 14 + (2 * text_height + 6 if ylabel else 0) + widest_y_label + 8
    right = width - 16
    top = (12 + 2 * text_height + 10) if title else 16
    bottom = height - (10 + text_height + 12 + (2 * text_height + 4 if xlabel else 0))
    if right - left < 60 or bottom - top < 40:
        raise ValueError(f"{width}x{height} leaves no room for the plot area")
    x_ticks, x_step = _nice_ticks(*x_range, target=max(2, (right - left) // 90))
    x_tick_labels = _tick_labels(x_ticks, x_step)

    def to_pixels(px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = left + (px - x_range[0]) / (x_range[1] - x_range[0]) * (right - left)
        v = bottom - (py - y_range[0]) / (y_range[1] - y_range[0]) * (bottom - top)
        return u, v

    image = np.full((height, width, 3), 255, np.uint8)
    for tick, label in zip(y_ticks, y_tick_labels):
        v = int(round(to_pixels(np.array([x_range[0]]), np.array([tick]))[1][0]))
        cv2.line(image, (left, v), (right, v), GRID_RGB, 1)
        cv2.line(image, (left - 4, v), (left, v), AXES_RGB, 1)
        label_width = cv2.getTextSize(label, FONT, tick_scale, 1)[0][0]
        _text(image, label, (left - 8 - label_width, v + text_height // 2), tick_scale)
    for tick, label in zip(x_ticks, x_tick_labels):
        u = int(round(to_pixels(np.array([tick]), np.array([y_range[0]]))[0][0]))
        cv2.line(image, (u, top), (u, bottom), GRID_RGB, 1)
        cv2.line(image, (u, bottom), (u, bottom + 4), AXES_RGB, 1)
        label_width = cv2.getTextSize(label, FONT, tick_scale, 1)[0][0]
        _text(image, label, (u - label_width // 2, bottom + 10 + text_height), tick_scale)
    cv2.rectangle(image, (left, top), (right, bottom), AXES_RGB, 1)

    occupied = np.zeros((height, width), np.uint8)  # where lines are, for placing the legend
    for index, name in enumerate(values):
        u, v = to_pixels(positions[name], values[name])
        _draw_line(image, u, v, series_colour(index))
        _draw_line(occupied, u, v, 255)

    if title:
        _centred_text(image, title, width // 2, 12 + 2 * text_height, title_scale, thickness=2)
    if xlabel:
        _centred_text(image, xlabel, (left + right) // 2, height - 10, label_scale)
    if ylabel:
        _vertical_text(image, ylabel, 10, (top + bottom) // 2, label_scale)
    if values:
        _legend(image, values, occupied, (left, top, right, bottom), tick_scale)
    return image


def line_plot_png(
    path: Path,
    series: dict[str, np.ndarray],
    *,
    x: np.ndarray | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (900, 360),
) -> None:
    """`line_plot`, written to `path` as a PNG (atomically: a crash leaves no half-written file)."""
    image = line_plot(series, x=x, title=title, xlabel=xlabel, ylabel=ylabel, size=size)
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


def write_png(path: Path, image: np.ndarray) -> None:
    """[H, W, 3] uint8 RGB -> PNG file, written atomically."""
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as PNG")
    write_bytes(Path(path), encoded.tobytes())


def _x_range(positions: dict[str, np.ndarray], values: dict[str, np.ndarray]) -> tuple[float, float]:
    finite = [p[np.isfinite(p)] for p in positions.values()]
    finite = np.concatenate(finite) if finite else np.zeros(0)
    if len(finite) == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    return (low - 0.5, high + 0.5) if low == high else (low, high)


def _y_range(values: dict[str, np.ndarray]) -> tuple[float, float]:
    finite = [v[np.isfinite(v)] for v in values.values()]
    finite = np.concatenate(finite) if finite else np.zeros(0)
    if len(finite) == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if low == high:
        pad = max(abs(low) * 0.1, 1.0) if low == 0 else abs(low) * 0.1
        return low - pad, high + pad
    pad = 0.05 * (high - low)
    return low - pad, high + pad


def _nice_ticks(low: float, high: float, target: int) -> tuple[np.ndarray, float]:
    """Ticks at the multiples of a step of 1, 2 or 5 times a power of ten within [low, high]: about `target`
    of them, and at least two. Returns the ticks and the step."""
    raw_step = (high - low) / max(target, 1)
    exponent = math.floor(math.log10(raw_step))
    steps = [m * 10.0**e for e in range(exponent + 1, exponent - 3, -1) for m in (5, 2, 1)]
    largest_useful = min((s for s in steps if s >= raw_step), default=steps[0])
    for step in [s for s in steps if s <= largest_useful]:
        first = math.ceil(low / step - 1e-9)
        last = math.floor(high / step + 1e-9)
        if last > first:
            break
    return np.arange(first, last + 1) * step, step


def _tick_labels(ticks: np.ndarray, step: float) -> list[str]:
    """Labels with as many decimals as the step needs."""
    if len(ticks) == 0:
        return []
    largest = float(np.abs(ticks).max())
    if largest >= 1e6 or step < 1e-4:
        for digits in range(3, 16):
            labels = [f"{t:.{digits}g}" for t in ticks]
            if len(set(labels)) == len(labels):
                break
        return labels
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    labels = [f"{t:.{decimals}f}" for t in ticks]
    return ["0" if float(label) == 0 else label for label in labels]


def _draw_line(image: np.ndarray, u: np.ndarray, v: np.ndarray, colour: tuple[int, int, int] | int) -> None:
    """Polylines through the finite points, broken at non-finite ones; lone points as dots."""
    finite = np.isfinite(u) & np.isfinite(v)
    boundaries = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]])))
    for start, stop in zip(boundaries[::2], boundaries[1::2]):
        points = np.round(np.stack([u[start:stop], v[start:stop]], axis=1) * (1 << SUBPIXEL_BITS))
        points = points.astype(np.int32)
        if len(points) == 1:
            cv2.circle(image, tuple(points[0]), 2 << SUBPIXEL_BITS, colour, -1, cv2.LINE_AA, SUBPIXEL_BITS)
        else:
            cv2.polylines(image, [points], False, colour, 2, cv2.LINE_AA, SUBPIXEL_BITS)


def _legend(
    image: np.ndarray,
    values: dict[str, np.ndarray],
    occupied: np.ndarray,
    plot_box: tuple[int, int, int, int],
    text_scale: float,
) -> None:
    """A boxed legend in the corner of the plot area where it hides the least of the lines (`occupied`)."""
    labels = [name if np.isfinite(v).any() else f"{name} (no data)" for name, v in values.items()]
    text_height = cv2.getTextSize("Ag", FONT, text_scale, 1)[0][1]
    row_height = text_height + 10
    swatch = 22
    box_width = 10 + swatch + 8 + max(cv2.getTextSize(t, FONT, text_scale, 1)[0][0] for t in labels) + 10
    box_height = 8 + row_height * len(labels)
    left, top, right, bottom = plot_box
    corners = [
        (right - 8 - box_width, top + 8),
        (left + 8, top + 8),
        (right - 8 - box_width, bottom - 8 - box_height),
        (left + 8, bottom - 8 - box_height),
    ]

    def covered(corner: tuple[int, int]) -> int:
        x0, y0 = max(corner[0], 0), max(corner[1], 0)
        return int(np.count_nonzero(occupied[y0 : y0 + box_height + 1, x0 : x0 + box_width + 1]))

    x0, y0 = min(corners, key=covered)
    cv2.rectangle(image, (x0, y0), (x0 + box_width, y0 + box_height), (255, 255, 255), -1)
    cv2.rectangle(image, (x0, y0), (x0 + box_width, y0 + box_height), AXES_RGB, 1)
    for index, label in enumerate(labels):
        middle = y0 + 4 + row_height * index + row_height // 2
        cv2.rectangle(image, (x0 + 10, middle - 2), (x0 + 10 + swatch, middle + 2), series_colour(index), -1)
        _text(image, label, (x0 + 10 + swatch + 8, middle + text_height // 2), text_scale)


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float, thickness: int = 1) -> None:
    cv2.putText(image, text, origin, FONT, scale, TEXT_RGB, thickness, cv2.LINE_AA)


def _centred_text(
    image: np.ndarray, text: str, centre_x: int, baseline_y: int, scale: float, thickness: int = 1
) -> None:
    text_width = cv2.getTextSize(text, FONT, scale, thickness)[0][0]
    _text(image, text, (max(2, centre_x - text_width // 2), baseline_y), scale, thickness)


def _vertical_text(image: np.ndarray, text: str, left: int, centre_y: int, scale: float) -> None:
    """Text reading bottom to top, its top edge at column `left`, centred on row `centre_y`."""
    (text_width, text_height), baseline = cv2.getTextSize(text, FONT, scale, 1)
    label = np.full((text_height + baseline + 4, text_width + 4, 3), 255, np.uint8)
    _text(label, text, (2, text_height + 2), scale)
    label = cv2.rotate(label, cv2.ROTATE_90_COUNTERCLOCKWISE)
    height, width = label.shape[:2]
    y0 = max(0, centre_y - height // 2)
    y1 = min(image.shape[0], y0 + height)
    x1 = min(image.shape[1], left + width)
    region = image[y0:y1, left:x1]
    np.minimum(region, label[: y1 - y0, : x1 - left], out=region)


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
