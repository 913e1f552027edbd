"""Training batches: augmentation moves labels with the pixels, and the data mix holds."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch")  # the train extra; the kiosk's own test environment lacks it

import torch

from models.train.augment import Crops, ImageBank, cell_targets, sample_crops
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
