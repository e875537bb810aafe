"""Line plots (matplotlib, Agg) and side-by-side frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avatar.eval.plots import line_plot, line_plot_png, series_colour, side_by_side


def _read_png(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"{path} is not a readable image"
    return image[:, :, ::-1]


def _near(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40) -> np.ndarray:
    """[H, W] bool: the pixels within `tolerance` (sum of absolute channel differences) of `rgb`."""
    return np.abs(image.astype(np.int32) - np.array(rgb)).sum(axis=-1) <= tolerance


def _pixels_near(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    return int(_near(image, rgb, tolerance).sum())


def _dark_pixels(image: np.ndarray) -> np.ndarray:
    return image.max(axis=-1) < 110  # text, axes and ticks are black or dark grey; no tab10 colour is


def _series() -> dict[str, np.ndarray]:
    t = np.linspace(0, 4 * np.pi, 200)
    return {"real": np.sin(t), "rendered": 0.8 * np.sin(t + 0.3), "psnr / 40": np.linspace(-0.5, 0.5, 200)}


def test_series_colours_are_tab10():
    assert series_colour(0) == (31, 119, 180)
    assert series_colour(1) == (255, 127, 14)
    assert series_colour(3) == (214, 39, 40)
    assert series_colour(10) == series_colour(0)
    assert len({series_colour(i) for i in range(10)}) == 10
    assert all(isinstance(c, int) and 0 <= c <= 255 for c in series_colour(7))


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
    assert _dark_pixels(image).sum() > 500  # text: title, labels, ticks


@pytest.mark.parametrize("size", [(900, 360), (641, 301), (201, 121), (200, 120), (1234, 567)])
def test_plot_is_exactly_the_requested_size(size):
    image = line_plot(_series(), title="t", xlabel="x", ylabel="y", size=size)
    assert image.shape == (size[1], size[0], 3) and image.dtype == np.uint8
    assert (image[0] == 255).all() and (image[:, -1] == 255).all()  # a white margin all round


def test_title_and_axis_labels_are_drawn_where_they_belong():
    series = {"rising": np.arange(50.0)}
    bare = line_plot(series, size=(600, 300))
    labelled = line_plot(series, title="A TITLE", xlabel="THE X AXIS", ylabel="THE Y AXIS", size=(600, 300))
    changed = _dark_pixels(labelled) & ~_dark_pixels(bare)
    assert changed[:30, 200:400].sum() > 50  # the title, centred above the plot
    assert changed[-30:, 200:400].sum() > 50  # the x label, centred below it
    assert changed[100:200, :30].sum() > 50  # the y label, on the left


def test_lines_follow_the_data():
    rising = line_plot({"rising": np.arange(50.0)}, size=(400, 200))
    rows, columns = np.nonzero(_near(rising, series_colour(0)))
    in_plot = columns > 100  # right of the y tick labels; the legend sits in a corner the line avoids
    slope = np.polyfit(columns[in_plot], rows[in_plot], 1)[0]
    assert slope < -0.1  # image rows grow downwards: a rising line has a negative slope


def test_legend_lists_the_series_in_order_with_their_colours():
    # All-NaN series draw no line, so their colours appear only in the legend's swatches.
    names = ["first", "second", "third"]
    image = line_plot({name: np.full(20, np.nan) for name in names}, size=(500, 300))
    boxes = []
    for index in range(3):
        rows, columns = np.nonzero(np.all(image == series_colour(index), axis=-1))
        assert len(rows) > 10, f"no legend swatch for series {index}"
        assert rows.max() - rows.min() <= 4 and columns.max() - columns.min() >= 12  # a short horizontal bar
        boxes.append((rows.mean(), columns.min(), columns.max()))
    assert boxes[0][0] < boxes[1][0] < boxes[2][0]  # top to bottom in the order of the dict
    assert boxes[0][1:] == boxes[1][1:] == boxes[2][1:]  # one above the other
    # text (the names) to the right of the swatches
    swatch_right = boxes[0][2]
    assert _dark_pixels(image[int(boxes[0][0]) - 6 : int(boxes[2][0]) + 6, swatch_right + 2 :]).sum() > 50
    assert not np.all(
        line_plot({}, size=(500, 300)) == series_colour(0), axis=-1
    ).any()  # no series: no legend


def test_legend_avoids_the_lines():
    # Lines along the top and the bottom of the plot: the legend goes between them, covering neither.
    image = line_plot({"top": np.ones(100), "bottom": np.zeros(100)}, size=(500, 300))
    line_rows = []
    for index in range(2):
        exact = np.all(image == series_colour(index), axis=-1)
        row = np.bincount(np.nonzero(exact)[0]).argmax()  # the (snapped, horizontal) line's row
        columns = np.flatnonzero(exact[row])
        assert len(columns) > 350, f"line of series {index} is not drawn across the plot"
        assert len(columns) == columns.max() - columns.min() + 1, f"line of series {index} is covered"
        swatch_rows = np.nonzero(exact)[0]
        swatch_rows = swatch_rows[np.abs(swatch_rows - row) > 3]
        assert len(swatch_rows) > 10, f"no legend swatch for series {index}"
        line_rows.append((row, swatch_rows))
    (top_row, top_swatch), (bottom_row, bottom_swatch) = line_rows
    assert top_row < top_swatch.min() and top_swatch.max() < bottom_swatch.min() < bottom_row


def test_x_values_and_gaps(tmp_path):
    x = np.linspace(10.0, 12.0, 60)
    values = np.cos(x)
    values[20:30] = np.nan
    path = tmp_path / "gaps.png"
    line_plot_png(path, {"cos": values}, x=x, title="with a gap", xlabel="s", ylabel="v")
    assert _read_png(path).shape == (360, 900, 3)
    with pytest.raises(ValueError, match="x has"):
        line_plot({"cos": values}, x=x[:10])


@pytest.mark.parametrize("where", ["values", "x"])
def test_non_finite_values_leave_a_gap(where):
    x = np.arange(60.0)
    values = np.full(60, 1.0)
    if where == "values":
        values[20:30] = np.nan
    else:
        x[20:30] = np.inf
    image = line_plot({"flat": values}, x=x, size=(600, 300))
    line = _near(image, series_colour(0))
    line_row = np.bincount(np.nonzero(line)[0]).argmax()
    columns = np.flatnonzero(line[line_row - 3 : line_row + 4].any(axis=0))
    first, last = columns.min(), columns.max()
    empty = np.setdiff1d(np.arange(first, last + 1), columns)
    assert len(empty) > 0, "no gap"
    assert len(empty) == empty.max() - empty.min() + 1  # one gap, not scattered holes
    # points 19 and 30 of 0..59 are the last and first drawn ones: the gap spans x = 19..30 (less the caps)
    span = last - first
    assert abs(empty.min() - (first + span * 19 / 59)) <= 6
    assert abs(empty.max() - (first + span * 30 / 59)) <= 6


def test_lone_points_between_gaps_are_drawn_as_dots():
    legend_only = line_plot({"dots": np.full(7, np.nan)}, size=(400, 200))
    dots = line_plot({"dots": np.array([np.nan, 1.0, np.nan, 2.0, np.nan, 1.5, np.nan])}, size=(400, 200))
    colour = series_colour(0)
    assert _pixels_near(dots, colour) > _pixels_near(legend_only, colour) + 3 * 10


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


@pytest.mark.parametrize("size", [(199, 300), (900, 119), (0, 0)])
def test_too_small_a_plot_is_refused(size):
    with pytest.raises(ValueError, match="at least 200x120"):
        line_plot(_series(), size=size)


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
