"""Quality gate: blank, small and faint images are rejected with their reason."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import QualityConfig
from edge.quality import Rejection, assess, with_minutiae_check

CONFIG = QualityConfig()


def ridges(height: int = 288, width: int = 256, amplitude: float = 100.0) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    wave = np.sin(2 * np.pi * (xx * 0.8 + yy * 0.6) / 9.0)
    pixels: np.ndarray = np.clip(128 + amplitude * wave, 0, 255).astype(np.uint8)
    return pixels


def test_a_full_clear_print_passes_with_a_high_score() -> None:
    report = assess(ridges(), CONFIG)
    assert report.accepted
    assert report.score >= 80
    assert report.foreground_fraction > 0.9


def test_an_empty_sensor_is_rejected_as_blank() -> None:
    report = assess(np.full((288, 256), 240, np.uint8), CONFIG)
    assert report.rejection is Rejection.BLANK
    assert report.score == 0


def test_a_fingertip_touching_a_corner_is_rejected_for_small_area() -> None:
    image = np.full((288, 256), 230, np.uint8)
    image[:48, :64] = ridges()[:48, :64]
    assert assess(image, CONFIG).rejection is Rejection.SMALL_AREA


def test_faint_ridges_are_rejected_for_low_contrast() -> None:
    assert assess(ridges(amplitude=8.0), CONFIG).rejection is Rejection.LOW_CONTRAST


def test_sensor_noise_without_ridges_is_rejected_as_unclear() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (288, 256)).astype(np.uint8)
    report = assess(noise, CONFIG)
    assert report.rejection is Rejection.UNCLEAR
    assert report.clarity < 0.15


def test_the_score_falls_as_noise_buries_the_ridges() -> None:
    rng = np.random.default_rng(1)
    clean = ridges().astype(np.float32)
    scores = []
    for sigma in (0, 40, 80, 160):
        noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255).astype(np.uint8)
        scores.append(assess(noisy, CONFIG).score)
    assert scores == sorted(scores, reverse=True)
    assert scores[0] >= 95 and scores[-1] < scores[0] - 30


def test_a_smaller_contact_area_scores_lower() -> None:
    image = np.full((288, 256), 230, np.uint8)
    image[:144, :] = ridges()[:144, :]
    half = assess(image, CONFIG)
    assert half.accepted
    assert half.score < assess(ridges(), CONFIG).score


def test_too_few_minutiae_turns_an_accepted_image_into_a_rejection() -> None:
    report = assess(ridges(), CONFIG)
    assert with_minutiae_check(report, CONFIG.min_minutiae, CONFIG).accepted
    late = with_minutiae_check(report, CONFIG.min_minutiae - 1, CONFIG)
    assert late.rejection is Rejection.FEW_MINUTIAE


@pytest.mark.parametrize("shape", [(8, 8), (300,), (10, 400)])
def test_images_too_small_or_not_2d_are_a_clear_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="2-D grey image"):
        assess(np.zeros(shape, np.uint8), CONFIG)
