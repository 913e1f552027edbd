"""Training batches: augmentation moves labels with the pixels, and the data mix holds."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch")  # the train extra; the kiosk's own test environment lacks it

from models.train.augment import _sample_crop
from models.train.data import SYNTHETIC, LabelledImage
from models.train.loop import sampling_weights


def _marked_image(x: float, y: float, angle: float) -> LabelledImage:
    """A dark image with a bright dot on the minutia and a dimmer one 20 px along its direction."""
    pixels = np.zeros((200, 200), np.uint8)
    dx, dy = math.cos(math.radians(angle)), -math.sin(math.radians(angle))
    for (px, py), value in (((x, y), 255), ((x + 20 * dx, y + 20 * dy), 140)):
        pixels[round(py) - 1 : round(py) + 2, round(px) - 1 : round(px) + 2] = value
    labels = np.array([[x, y, dx, dy, 1]], np.float32)
    return LabelledImage("marked", "TEST", pixels, labels)


@pytest.mark.parametrize("seed", range(6))
def test_a_crop_moves_the_minutia_and_turns_its_direction_with_the_pixels(seed: int) -> None:
    image = _marked_image(95.0, 104.0, angle=30.0 * seed)
    crop, labels = _sample_crop(image, 160, np.random.default_rng(seed))
    pixels = crop[0].numpy()
    x, y, dx, dy, _ = labels[0]
    assert np.hypot(dx, dy) == pytest.approx(1.0, abs=1e-5)
    at = np.unravel_index(np.argmax(pixels), pixels.shape)
    assert math.hypot(at[1] - x, at[0] - y) <= 1.5
    # the dimmer dot: the brightest pixel away from the first one
    yy, xx = np.mgrid[: pixels.shape[0], : pixels.shape[1]]
    away = np.where(np.hypot(xx - x, yy - y) > 8, pixels, -np.inf)
    tip = np.unravel_index(np.argmax(away), pixels.shape)
    seen = math.degrees(math.atan2(-(tip[0] - y), tip[1] - x))
    labelled = math.degrees(math.atan2(-dy, dx))
    assert abs((seen - labelled + 180) % 360 - 180) < 8


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
