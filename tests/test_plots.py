"""OpenCV line plots and side-by-side frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avatar.plots import line_plot, line_plot_png, series_colour, side_by_side


def _read_png(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a readable image"
    return image[:, :, ::-1]


def _pixels_near(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    distance = np.abs(image.astype(np.int32) - np.array(rgb)).sum(axis=-1)
    return int((distance <= tolerance).sum())


def _series() -> dict[str, np.ndarray]:
    t = np.linspace(0, 4 * np.pi, 200)
    return {"real": np.sin(t), "rendered": 0.8 * np.sin(t + 0.3), "psnr / 40": np.linspace(-0.5, 0.5, 200)}


def test_png_has_the_requested_size_and_every_series_colour(tmp_path):
    path = tmp_path / "plots" / "mouth.png"
    line_plot_png(path, _series(), title="Mouth opening", xlabel="frame", ylabel="openness", size=(640, 300))
    image = _read_png(path)
    assert image.shape == (300, 640, 3)
    for index in range(3):
        colour = series_colour(index)
        assert np.all(image == colour, axis=-1).any(), f"legend swatch of series {index} missing"
        assert _pixels_near(image, colour) > 300, f"line of series {index} missing"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    assert _pixels_near(image, (30, 30, 30), tolerance=60) > 500  # text: title, labels, ticks


def test_lines_follow_the_data():
    rising = line_plot({"rising": np.arange(50.0)}, size=(400, 200))
    colour = series_colour(0)
    rows, columns = np.nonzero(np.abs(rising.astype(int) - colour).sum(axis=-1) <= 40)
    in_plot = columns > 100  # right of the y tick labels; the legend sits in a corner the line avoids
    slope = np.polyfit(columns[in_plot], rows[in_plot], 1)[0]
    assert slope < -0.1  # image rows grow downwards: a rising line has a negative slope


def test_x_values_and_gaps(tmp_path):
    x = np.linspace(10.0, 12.0, 60)
    values = np.cos(x)
    values[20:30] = np.nan
    path = tmp_path / "gaps.png"
    line_plot_png(path, {"cos": values}, x=x, title="with a gap", xlabel="s", ylabel="v")
    assert _read_png(path).shape == (360, 900, 3)
    with pytest.raises(ValueError, match="x has"):
        line_plot({"cos": values}, x=x[:10])


@pytest.mark.parametrize(
    "series",
    [
        {"all nan": np.full(30, np.nan)},
        {"constant": np.full(30, 2.5)},
        {"zero": np.zeros(30)},
        {"one point": np.array([0.7])},
        {"empty": np.zeros(0)},
        {"inf and nan": np.array([np.inf, np.nan, 1.0, 2.0, -np.inf])},
        {"huge": np.array([1e9, 3e9, 2e9]), "tiny": np.array([1e9, 1e9 + 1e-3, 1e9])},
        {},
    ],
    ids=lambda series: ",".join(series) or "no series",
)
def test_degenerate_series_do_not_crash(tmp_path, series):
    path = tmp_path / "degenerate.png"
    line_plot_png(path, series, title="degenerate", xlabel="x", ylabel="y", size=(300, 160))
    assert _read_png(path).shape == (160, 300, 3)


def test_constant_series_is_drawn():
    image = line_plot({"constant": np.full(40, 2.5)}, size=(400, 200))
    assert _pixels_near(image, series_colour(0)) > 200


def test_side_by_side():
    left = np.full((120, 100, 3), 200, np.uint8)
    right = np.full((60, 80, 3), 50, np.uint8)
    pair = side_by_side(left, right)
    assert pair.shape == (120, 100 + 160, 3)
    assert (pair[60:, 10] == 200).all() and (pair[60:, 200] == 50).all()
    for x0, x1 in ((0, 100), (100, 260)):
        # a dark label box in the top-left corner of each image, with light text on it
        half = pair[:, x0:x1, 0]
        rows, columns = np.nonzero(half == 20)
        assert len(rows) > 50 and rows.min() == 0 and columns.min() == 0 and rows.max() < 30
        box = half[: rows.max() + 1, : columns.max() + 1]
        assert (box > 150).sum() > 20
    unlabelled = side_by_side(left, left, labels=("", ""))
    assert (unlabelled == 200).all()
    with pytest.raises(ValueError):
        side_by_side(left.astype(np.float32), left)


@pytest.mark.parametrize(
    "low, high, target, expected",
    [
        (0.0, 1.0, 6, ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]),
        (2.25, 2.75, 2, ["2.4", "2.6"]),  # a narrow range still gets two ticks, labelled with enough decimals
        (2.01, 2.49, 2, ["2.2", "2.4"]),
        (-1.1, 1.1, 4, ["-1", "0", "1"]),
        (0.0, 11.96, 6, ["0", "2", "4", "6", "8", "10"]),
        (9e8, 3.1e9, 2, ["1e+09", "2e+09", "3e+09"]),
    ],
)
def test_tick_values_and_labels(low, high, target, expected):
    from avatar.plots import _nice_ticks, _tick_labels

    ticks, step = _nice_ticks(low, high, target)
    assert _tick_labels(ticks, step) == expected
    assert np.all((ticks >= low) & (ticks <= high))
