"""Training batches: augmentation moves labels with the pixels, and the data mix holds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("torch")  # the train extra; the kiosk's own test environment lacks it

import torch

from models.train.augment import (
    LOG_SCALE_RANGE,
    Crops,
    ImageBank,
    cell_targets,
    resample,
    sample_crops,
    source_windows,
    window_side,
)
from models.train.data import OPEN, SYNTHETIC, LabelledImage
from models.train.loop import losses, sampling_weights


def _marked_image(x: float, y: float, angle: float) -> LabelledImage:
    """A dark image with a bright dot on the minutia and a dimmer one 20 px along its direction.

    The dots are 5 px wide so that ridge thinning and blur (``strong``) leave them the peaks.
    """
    pixels = np.zeros((200, 200), np.uint8)
    dx, dy = math.cos(math.radians(angle)), -math.sin(math.radians(angle))
    for (px, py), value in (((x, y), 255), ((x + 20 * dx, y + 20 * dy), 140)):
        pixels[round(py) - 2 : round(py) + 3, round(px) - 2 : round(px) + 3] = value
    labels = np.array([[x, y, dx, dy, 1]], np.float32)
    return LabelledImage("marked", "TEST", pixels, labels)


def _crop(image: LabelledImage, seed: int, augmentation: str) -> tuple[np.ndarray, np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    crops = sample_crops(ImageBank.build([image]), torch.tensor([0]), 160, generator, augmentation)  # type: ignore[arg-type]
    return crops.images[0, 0].numpy(), crops.minutiae[0].numpy()


def _blob_centre(pixels: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> tuple[float, float]:
    """x, y centroid of the bright pixels around the brightest one."""
    py, px = np.unravel_index(np.argmax(pixels), pixels.shape)
    floor = np.median(pixels)
    near = (np.hypot(xx - px, yy - py) <= 5) & (pixels > floor + 0.5 * (pixels[py, px] - floor))
    weight = np.where(near, pixels - floor, 0.0)
    return float((weight * xx).sum() / weight.sum()), float((weight * yy).sum() / weight.sum())


@pytest.mark.parametrize("augmentation", ["basic", "strong"])
@pytest.mark.parametrize("seed", range(6))
def test_a_crop_moves_the_minutia_and_turns_its_direction_with_the_pixels(
    seed: int, augmentation: str
) -> None:
    image = _marked_image(95.0, 104.0, angle=30.0 * seed)
    pixels, labels = _crop(image, seed, augmentation)
    x, y, dx, dy, _ = labels[0]
    assert np.hypot(dx, dy) == pytest.approx(1.0, abs=1e-5)
    yy, xx = np.mgrid[: pixels.shape[0], : pixels.shape[1]]
    at = _blob_centre(pixels, yy, xx)
    assert math.hypot(at[0] - x, at[1] - y) <= 1.0
    # the dimmer dot: the brightest blob on a ring around the first one (about 20 px away)
    ring = np.abs(np.hypot(xx - x, yy - y) - 20) <= 6
    tip = _blob_centre(np.where(ring, pixels, pixels.min()), yy, xx)
    seen = math.degrees(math.atan2(-(tip[1] - y), tip[0] - x))
    labelled = math.degrees(math.atan2(-dy, dx))
    assert abs((seen - labelled + 180) % 360 - 180) < 8


def test_cell_targets_put_each_minutia_in_its_cell_and_the_later_of_two_wins() -> None:
    rows = [[20.0, 9.0, 1.0, 0.0, 1], [21.0, 10.0, 0.0, 1.0, 2], [3.0, 40.0, 0.0, -1.0, 0]]
    crops = Crops(
        torch.from_numpy(np.zeros((1, 1, 48, 48), np.float32)),
        torch.tensor([[*rows, [0.0, 0.0, 0.0, 0.0, 0]]]),
        torch.tensor([[True, True, True, False]]),  # the last row is padding
    )
    batch = cell_targets(crops)
    assert batch.presence.sum() == 2
    # x 21 -> column 2 (covers 16..24), y 10 -> row 1; the second row overwrote the first
    assert batch.presence[0, 1, 2] == 1
    assert batch.offsets[0, :, 1, 2].tolist() == pytest.approx([21.5 / 8 - 2, 10.5 / 8 - 1])
    assert batch.direction[0, :, 1, 2].tolist() == pytest.approx([0.0, -1.0])
    assert batch.bifurcation[0, 1, 2] == 1.0
    assert batch.presence[0, 5, 0] == 1 and batch.bifurcation[0, 5, 0] == -1.0  # kind unknown
    assert batch.presence[0, 0, 0] == 0  # padding rows are no minutiae


def _open_crops() -> Crops:
    rows = [
        [20.0, 9.0, 1.0, 0.0, OPEN],  # cell (1, 2), alone: open
        [30.0, 30.0, 1.0, 0.0, OPEN],  # cell (3, 3), which a label shares: taught
        [29.0, 27.0, 0.0, 1.0, 1],
    ]
    return Crops(
        torch.from_numpy(np.zeros((1, 1, 48, 48), np.float32)),
        torch.tensor([rows]),
        torch.tensor([[True, True, True]]),
    )


def test_an_open_row_leaves_its_cell_untaught_unless_a_label_shares_it() -> None:
    batch = cell_targets(_open_crops())
    assert batch.presence.sum() == 1 and batch.presence[0, 3, 3] == 1
    assert batch.open.sum() == 1 and batch.open[0, 1, 2] == 1
    assert batch.direction[0, :, 3, 3].tolist() == pytest.approx([0.0, -1.0])  # the label's


def test_the_presence_loss_ignores_what_the_network_says_in_open_cells() -> None:
    batch = cell_targets(_open_crops())
    heads = torch.zeros(1, 7, 6, 6)
    confident = heads.clone()
    confident[0, 0, 1, 2] = 9.0  # sure of a minutia in the open cell
    assert losses(confident, batch)["presence"] == pytest.approx(losses(heads, batch)["presence"])
    confident[0, 0, 0, 0] = 9.0  # and in a cell taught as background
    assert losses(confident, batch)["presence"] > losses(heads, batch)["presence"]


def test_synthetic_images_fill_the_asked_share_of_batches() -> None:
    blank = np.zeros((8, 8), np.uint8)
    none = np.zeros((0, 5), np.float32)
    images = [LabelledImage(f"r{i}", "DB1_B", blank, none) for i in range(30)]
    images += [LabelledImage(f"s{i}", SYNTHETIC, blank, none) for i in range(90)]
    weights = sampling_weights(images, 0.3)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[30:].sum() == pytest.approx(0.3)
    assert len(set(weights[:30].tolist())) == 1  # every real image as likely as another


def test_without_synthetic_images_every_image_is_equally_likely() -> None:
    blank = np.zeros((8, 8), np.uint8)
    none = np.zeros((0, 5), np.float32)
    images = [LabelledImage(f"r{i}", "DB1_B", blank, none) for i in range(7)]
    assert np.allclose(sampling_weights(images, 0.3), 1 / 7)


def _ridges(height: int, width: int, seed: int) -> LabelledImage:
    """Curved ridges about 9 px apart on a brighter background, with one labelled minutia."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    phase = 2 * np.pi * (xx + 0.002 * (yy - height / 2) ** 2) / 9.0 + rng.uniform(0, 6)
    pixels = 170 + 60 * np.sin(phase) + rng.normal(0, 5, (height, width))
    labels = np.array([[width / 2, height / 2, 1.0, 0.0, 1]], np.float32)
    return LabelledImage("ridges", "TEST", pixels.clip(0, 255).astype(np.uint8), labels)


def test_a_window_holds_the_image_pixels_it_covers_and_nothing_beyond_the_image() -> None:
    bank = ImageBank.build([_ridges(120, 90, 0), _ridges(70, 150, 1)])
    origin = torch.tensor([[-20.0, 100.0], [130.0, -5.0]])
    pixels, inside = source_windows(bank, torch.tensor([0, 1]), origin, 32)
    for n, (h, w) in enumerate([(120, 90), (70, 150)]):
        whole = np.zeros((h + 100, w + 100), np.float32)  # the image, 50 px of nothing around it
        whole[50 : 50 + h, 50 : 50 + w] = bank.pixels[n, :h, :w].numpy()
        x, y = int(origin[n, 0]) + 50, int(origin[n, 1]) + 50
        expected = whole[y : y + 32, x : x + 32]
        assert np.array_equal(pixels[n, 0].numpy(), expected)
        on_image = np.zeros_like(whole)
        on_image[50 : 50 + h, 50 : 50 + w] = 1
        assert np.array_equal(inside[n, 0].numpy(), on_image[y : y + 32, x : x + 32])


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from([32, 64, 160]),
    theta=st.floats(-math.pi, math.pi),
    log_scale=st.floats(-LOG_SCALE_RANGE, LOG_SCALE_RANGE),
    cx=st.floats(0.0, 1.0),
    cy=st.floats(0.0, 1.0),
)
def test_a_crop_read_from_its_window_equals_the_crop_read_from_the_whole_image(
    size: int, theta: float, log_scale: float, cx: float, cy: float
) -> None:
    grey = torch.from_numpy(_ridges(560, 600, 2).pixels.astype(np.float32))[None, None]
    centre = torch.tensor([[200 + 200 * cx, 200 + 160 * cy]])  # windows inside the image
    scale = math.exp(log_scale)
    u = torch.arange(size, dtype=torch.float32) + 0.5 - size / 2
    grid_v, grid_u = torch.meshgrid(u, u, indexing="ij")
    cos, sin = math.cos(theta), math.sin(theta)
    inverse = torch.tensor([[cos, sin], [-sin, cos]]) / scale
    source = (torch.stack([grid_u, grid_v], -1) @ inverse.T + centre).reshape(1, size, size, 2)
    side = window_side(size)
    origin = torch.floor(centre) - side // 2
    x, y = int(origin[0, 0]), int(origin[0, 1])
    window = grey[:, :, y : y + side, x : x + side]
    from_window = resample(window, origin, source)
    from_whole = resample(grey, torch.zeros(1, 2), source)
    assert torch.allclose(from_window, from_whole, atol=1e-3)


def test_windowed_crops_are_the_whole_image_crops_up_to_their_noise() -> None:
    bank = ImageBank.build([_ridges(388, 374, 3), _ridges(300, 300, 4), _ridges(492, 260, 5)])
    index = torch.tensor([0, 1, 2, 0, 1, 2])
    windowed = sample_crops(bank, index, 160, torch.Generator().manual_seed(7), window=True)
    whole = sample_crops(bank, index, 160, torch.Generator().manual_seed(7), window=False)
    assert torch.equal(windowed.minutiae, whole.minutiae)  # the same draws place the same crops
    a, b = windowed.images.flatten(1), whole.images.flatten(1)
    # standardised by the whole image either way: the sparse estimate is within a few percent
    assert torch.allclose(a.mean(dim=1), b.mean(dim=1), atol=0.05)
    assert torch.allclose(a.std(dim=1), b.std(dim=1), rtol=0.05)
    correlation = ((a - a.mean(1, True)) * (b - b.mean(1, True))).mean(1) / (a.std(1) * b.std(1))
    assert bool((correlation > 0.95).all())


def test_the_standardisation_is_not_fooled_by_ridges_in_step_with_a_sampling_grid() -> None:
    # Straight ridges 8 px apart, dark on every 4th column's alternate phases: a grid of every
    # fourth pixel would see almost no contrast and blow the crop up.
    xx = np.arange(320)[None, :].repeat(320, 0)
    pixels = (128 + 100 * np.cos(2 * np.pi * xx / 8 + np.pi / 2)).astype(np.uint8)
    image = LabelledImage("straight", "TEST", pixels, np.zeros((0, 5), np.float32))
    bank = ImageBank.build([image])
    index = torch.tensor([0, 0, 0, 0])
    windowed = sample_crops(bank, index, 160, torch.Generator().manual_seed(3), window=True)
    whole = sample_crops(bank, index, 160, torch.Generator().manual_seed(3), window=False)
    a, b = windowed.images.flatten(1), whole.images.flatten(1)
    assert torch.allclose(a.std(dim=1), b.std(dim=1), rtol=0.05)
