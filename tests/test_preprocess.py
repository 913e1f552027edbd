"""Image preparation before the network: background flattening and its building blocks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from PIL import Image

from edge.preprocess import (
    BACKGROUND_SMOOTHING,
    _block_max,
    _smooth,
    _upsample,
    _window_max,
    flatten_background,
    smoothing_taps,
    standardise,
)
from hil.fingers import FingerGenerator

images = arrays(
    np.uint8,
    st.tuples(st.integers(1, 40), st.integers(1, 40)),
    elements=st.integers(0, 255),
)


@pytest.fixture(scope="module")
def finger() -> NDArray[np.uint8]:
    return FingerGenerator(seed=3).impression(finger_id=1, impression_id=0).image


def _uneven(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """A capacitive-looking copy: a grey platen, darker to the left and to the top."""
    height, width = image.shape
    light = 0.35 + 0.45 * np.add.outer(np.linspace(0, 0.5, height), np.linspace(0, 0.5, width))
    return np.round(image * light).astype(np.uint8)


@given(images, st.integers(0, 4))
def test_window_max_is_the_brightest_pixel_around_each_pixel(
    image: NDArray[np.uint8], reach: int
) -> None:
    padded = np.pad(image, reach, mode="edge")
    side = 2 * reach + 1
    expected = sliding_window_view(padded, (side, side)).max(axis=(2, 3))
    assert np.array_equal(_window_max(image, reach), expected)


@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 12), st.integers(1, 12)),
        elements=st.floats(0, 255, width=32),
    ),
    st.integers(1, 5),
)
def test_upsampling_is_bilinear_between_cell_centres(
    grid: NDArray[np.float32], factor: int
) -> None:
    rows, cols = grid.shape
    expected = Image.fromarray(grid, mode="F").resize(
        (cols * factor, rows * factor), Image.Resampling.BILINEAR
    )
    got = _upsample(_upsample(grid, factor, 0), factor, 1)
    assert np.allclose(got, np.asarray(expected), atol=1e-3)


@given(images, st.integers(1, 6))
def test_block_max_is_the_brightest_pixel_of_each_tile(
    image: NDArray[np.uint8], block: int
) -> None:
    height, width = image.shape
    got = _block_max(image, block)
    assert got.shape == (-(-height // block), -(-width // block))
    for (row, col), value in np.ndenumerate(got):
        assert (
            value == image[row * block : (row + 1) * block, col * block : (col + 1) * block].max()
        )


def test_the_background_level_is_smoothed_by_a_normalised_gaussian_of_two_blocks() -> None:
    taps = smoothing_taps()
    offsets = np.arange(len(taps)) - len(taps) // 2
    assert np.isclose(taps.sum(), 1.0)
    assert np.isclose(np.sqrt((taps * offsets**2).sum()), BACKGROUND_SMOOTHING, rtol=0.02)
    impulse = np.zeros((31, 33), dtype=np.float32)
    impulse[15, 16] = 1.0
    spread = _smooth(impulse)
    reach = len(taps) // 2
    window = spread[15 - reach : 16 + reach, 16 - reach : 17 + reach]
    assert np.allclose(window, np.outer(taps, taps), atol=1e-7)
    assert np.isclose(spread.sum(), 1.0)


def test_smoothing_repeats_the_edges_so_a_level_image_stays_level_to_its_border() -> None:
    # zero padding would darken the border; repeating the edge keeps it
    assert np.allclose(_smooth(np.full((9, 20), 100.0, dtype=np.float32)), 100.0, atol=1e-4)
    ramp = np.tile(np.arange(20, dtype=np.float32), (9, 1))
    smooth = _smooth(ramp)
    assert np.allclose(smooth[:, 6:14], ramp[:, 6:14], atol=1e-4)  # linear: unchanged inside
    assert np.allclose(smooth, smooth[0])  # rows that are alike stay alike


def test_a_grey_uneven_platen_comes_out_white_with_the_ridges_still_dark(
    finger: NDArray[np.uint8],
) -> None:
    grey = _uneven(finger)
    flat = flatten_background(grey)
    half_h, half_w = (s // 2 for s in grey.shape)
    for rows in (slice(0, half_h), slice(half_h, None)):
        for cols in (slice(0, half_w), slice(half_w, None)):
            valleys, ridges = np.percentile(flat[rows, cols], [90, 10])
            assert valleys >= 230
            assert ridges <= 0.6 * valleys
    # as captured, the same quarters are far apart: the check above is not vacuous
    assert np.percentile(grey[:half_h, :half_w], 90) < 0.75 * np.percentile(
        grey[half_h:, half_w:], 90
    )


def test_flattening_undoes_a_smooth_change_of_light(finger: NDArray[np.uint8]) -> None:
    as_captured = np.abs(finger.astype(np.float32) - _uneven(finger)).mean()
    flattened = np.abs(flatten_background(finger) - flatten_background(_uneven(finger))).mean()
    assert flattened < 6.0 < as_captured


def test_an_even_image_flattens_to_white() -> None:
    assert np.array_equal(
        flatten_background(np.full((50, 70), 90, np.uint8)), np.full((50, 70), 255.0)
    )


def test_a_black_image_stays_black() -> None:
    assert not flatten_background(np.zeros((20, 20), np.uint8)).any()


@given(images)
def test_flattening_keeps_the_shape_and_the_grey_range(image: NDArray[np.uint8]) -> None:
    flat = flatten_background(image)
    assert flat.shape == image.shape and flat.dtype == np.float32
    assert flat.min() >= 0 and flat.max() <= 255


@pytest.mark.parametrize(
    "image",
    [np.zeros((4, 4), np.float32), np.zeros((4, 4, 3), np.uint8)],
    ids=["float", "colour"],
)
def test_flattening_refuses_what_is_not_a_grey_image(image: NDArray[np.generic]) -> None:
    with pytest.raises(ValueError, match="2-D uint8"):
        flatten_background(image)  # type: ignore[arg-type]


@given(
    arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))),
    st.sampled_from([1, 8, 16]),
)
def test_a_standardised_image_is_padded_with_its_mean_to_the_multiple(
    image: NDArray[np.uint8], multiple: int
) -> None:
    out = standardise(image, multiple)
    height, width = image.shape
    assert out.shape[0] % multiple == 0 and out.shape[1] % multiple == 0
    assert height <= out.shape[0] < height + multiple and width <= out.shape[1] < width + multiple
    inside = out[:height, :width].astype(np.float64)
    assert abs(inside.mean()) < 1e-3
    assert inside.std() == pytest.approx(1.0, abs=1e-3) or image.std() < 1.0
    assert not out[height:].any() and not out[:, width:].any()
