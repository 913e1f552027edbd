"""The generator's building blocks: orientation model, ridge period, thinning, minutia reading,
placement geometry."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edge.minutiae import MinutiaKind
from hil.fingers import QUALITIES, FingerGenerator, Quality
from hil.fingers.generator import MASTER_SHAPE
from hil.fingers.impression import random_placement
from hil.fingers.orientation import (
    PATTERN_CLASSES,
    PatternClass,
    arch_orientation,
    perturb,
    random_arch,
    random_silhouette,
    random_singular_points,
    zero_pole_orientation,
)
from hil.fingers.raster import erode
from hil.fingers.thinning import crossing_number, thin
from hil.fingers.truth import true_minutiae

EXPECTED_SINGULARITIES: dict[PatternClass, tuple[int, int]] = {
    "arch": (0, 0),
    "tented_arch": (1, 1),
    "left_loop": (1, 1),
    "right_loop": (1, 1),
    "whorl": (2, 2),
}


def _orientation(pattern: PatternClass, seed: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    silhouette = random_silhouette(rng, MASTER_SHAPE)
    if pattern == "arch":
        theta = arch_orientation(MASTER_SHAPE, random_arch(rng, silhouette))
    else:
        points = random_singular_points(rng, pattern, silhouette)
        theta = zero_pole_orientation(MASTER_SHAPE, points)
    return perturb(rng, theta, 0.12)


def _poincare_census(theta: npt.NDArray[np.float32], block: int = 16) -> tuple[int, int]:
    """Cores and deltas found by walking round each block of the field (Poincare index)."""
    doubled = 2.0 * theta.astype(np.float64)
    cores = deltas = 0
    rows, cols = theta.shape
    for top in range(0, rows - block, block):
        for left in range(0, cols - block, block):
            b, r = top + block, left + block
            ring = np.concatenate(
                [
                    doubled[top, left:r],
                    doubled[top:b, r],
                    doubled[b, r:left:-1],
                    doubled[b:top:-1, left],
                    doubled[top, left : left + 1],
                ]
            )
            turn = np.angle(np.exp(1j * np.diff(ring))).sum()
            # Walking clockwise on screen (y down) is counter-clockwise in the upright frame.
            index = round(turn / (2 * np.pi))
            cores += max(index, 0)
            deltas += max(-index, 0)
    return cores, deltas


@pytest.mark.parametrize("pattern", PATTERN_CLASSES)
def test_pattern_class_has_its_cores_and_deltas(pattern: PatternClass) -> None:
    for seed in range(3):
        assert _poincare_census(_orientation(pattern, seed)) == EXPECTED_SINGULARITIES[pattern]


@pytest.mark.parametrize("pattern", ["left_loop", "right_loop"])
def test_loop_delta_lies_opposite_the_side_the_loop_opens_to(pattern: PatternClass) -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        points = random_singular_points(rng, pattern, random_silhouette(rng, MASTER_SHAPE))
        [(core_x, core_y)] = points.cores
        [(delta_x, delta_y)] = points.deltas
        assert delta_y > core_y
        assert (delta_x < core_x) == (pattern == "right_loop")


def _fft_period(window: npt.NDArray[np.float32]) -> float:
    size = window.shape[0]
    taper = np.outer(np.hanning(size), np.hanning(size))
    padded = 512
    spectrum = np.abs(np.fft.fft2((window - window.mean()) * taper, s=(padded, padded)))
    spectrum[0, 0] = 0
    ky, kx = np.unravel_index(int(np.argmax(spectrum)), spectrum.shape)
    fy = (ky if ky < padded // 2 else ky - padded) / padded
    fx = (kx if kx < padded // 2 else kx - padded) / padded
    return float(1.0 / math.hypot(fx, fy))


@pytest.mark.parametrize("period_range", [(8.0, 11.0), (11.0, 13.0)])
def test_master_ridge_period_stays_in_the_configured_range(
    period_range: tuple[float, float],
) -> None:
    master = FingerGenerator(4, period_range=period_range).finger(0)
    inner = erode(master.mask, 40)
    singular = master.singular_points.cores + master.singular_points.deltas
    size = 48
    measured = []
    for y in range(size, MASTER_SHAPE[0] - size, size):
        for x in range(size, MASTER_SHAPE[1] - size, size):
            if not inner[y, x] or any(math.hypot(x - sx, y - sy) < 60 for sx, sy in singular):
                continue
            window = master.ridges[y - size // 2 : y + size // 2, x - size // 2 : x + size // 2]
            measured.append((_fft_period(window), float(master.period[y, x])))
    assert len(measured) >= 10
    low, high = period_range
    for found, planned in measured:
        assert 0.9 * low <= found <= 1.1 * high
        assert found == pytest.approx(planned, rel=0.2)
    ratios = [found / planned for found, planned in measured]
    assert float(np.median(ratios)) == pytest.approx(1.0, abs=0.08)


def _stripes(cut_at: int) -> npt.NDArray[np.float32]:
    """Horizontal ridges 10 px apart; the ridge on row 60 is missing left of ``cut_at``."""
    rows = np.arange(120, dtype=np.float32)[:, None]
    ridges = np.cos(2 * np.pi * rows / 10.0) * np.ones((1, 160), dtype=np.float32)
    ridges[55:66, :cut_at] = -1.0
    stripes: npt.NDArray[np.float32] = ridges.astype(np.float32)
    return stripes


def _read(ridges: npt.NDArray[np.float32], theta: float) -> list[tuple[float, float, float, int]]:
    shape = ridges.shape
    minutiae = true_minutiae(
        ridges,
        np.ones(shape, dtype=bool),
        np.full(shape, theta, dtype=np.float32),
        np.full(shape, 10.0, dtype=np.float32),
    )
    return [(m.x, m.y, m.angle, int(m.kind)) for m in minutiae]


def test_ridge_ending_sits_in_front_of_the_ridge_and_points_into_it() -> None:
    [(x, y, angle, kind)] = _read(_stripes(80), 0.0)
    assert kind == MinutiaKind.ENDING
    # ISO/IEC 19794-2:2005 places it where the valley skeleton forks, ahead of the ridge tip.
    assert 66 <= x <= 79 and y == pytest.approx(60, abs=1)
    assert angle == pytest.approx(0.0, abs=1e-6)


def test_bifurcation_sits_at_the_fork_and_points_between_the_branches() -> None:
    # The negative of a ridge ending: the thick ridge on the left splits in two at x ~ 80,
    # with a valley between the branches running to the right.
    [(x, y, angle, kind)] = _read(-_stripes(80), 0.0)
    assert kind == MinutiaKind.BIFURCATION
    # Where the ridge skeleton forks: the medial line of the thick ridge splits before x = 80.
    assert 66 <= x <= 79 and y == pytest.approx(60, abs=1)
    assert angle == pytest.approx(0.0, abs=1e-6)


def test_minutia_angles_count_counter_clockwise_with_y_down() -> None:
    mirrored = _stripes(80)[:, ::-1].copy()
    [(_, _, angle, _)] = _read(mirrored, 0.0)
    assert angle == pytest.approx(180.0)
    # Turned to vertical ridges, the ridge now continues downwards on screen: 270 degrees.
    upright = _stripes(80).T.copy()
    [(x, _, angle, kind)] = _read(upright, math.pi / 2)
    assert kind == MinutiaKind.ENDING and x == pytest.approx(60, abs=1)
    assert angle == pytest.approx(270.0)


def test_minutiae_near_the_outline_are_dropped() -> None:
    ridges = _stripes(80)
    mask = np.ones(ridges.shape, dtype=bool)
    mask[:, 86:] = False  # the outline passes just behind the ending
    shape = ridges.shape
    found = true_minutiae(
        ridges, mask, np.zeros(shape, np.float32), np.full(shape, 10.0, np.float32)
    )
    assert found == []


def test_a_short_island_is_not_read_as_two_endings() -> None:
    ridges = _stripes(0)
    ridges[58:63, 78:84] = 1.0  # a dot of ridge, shorter than a ridge period
    shape = ridges.shape
    found = true_minutiae(
        ridges,
        np.ones(shape, dtype=bool),
        np.zeros(shape, np.float32),
        np.full(shape, 10.0, np.float32),
    )
    assert found == []


def test_thinning_leaves_a_one_pixel_line_with_two_ends() -> None:
    band = np.zeros((20, 40), dtype=bool)
    band[8:13, 5:35] = True
    skeleton = thin(band)
    assert skeleton.sum(axis=0)[8:32].tolist() == [1] * 24
    crossings = crossing_number(skeleton)
    assert np.count_nonzero(crossings == 1) == 2
    assert np.count_nonzero(crossings >= 3) == 0


def test_thinning_marks_the_fork_of_a_y() -> None:
    shape = np.zeros((40, 40), dtype=bool)
    shape[20:23, 3:20] = True  # stem
    for k in range(15):
        shape[19 - k : 22 - k, 19 + k : 22 + k] = True  # upper branch
        shape[21 + k : 24 + k, 19 + k : 22 + k] = True  # lower branch
    crossings = crossing_number(thin(shape))
    assert np.count_nonzero(crossings == 1) == 3
    forks = np.argwhere(crossings >= 3)
    assert len(forks) >= 1
    assert all(abs(r - 21) <= 2 and abs(c - 20) <= 3 for r, c in forks)


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, (12, 14)))
def test_thinning_keeps_only_input_pixels_and_is_stable(image: npt.NDArray[np.bool_]) -> None:
    skeleton = thin(image)
    assert not np.any(skeleton & ~image)
    assert np.array_equal(thin(skeleton), skeleton)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    quality=st.sampled_from(QUALITIES),
    ppi=st.sampled_from([400.0, 500.0, 1000.0]),
    u=st.floats(0, 399),
    v=st.floats(0, 399),
)
def test_placement_maps_image_to_master_and_back(
    seed: int, quality: Quality, ppi: float, u: float, v: float
) -> None:
    rng = np.random.default_rng(seed)
    silhouette = random_silhouette(rng, MASTER_SHAPE)
    placement = random_placement(rng, quality, silhouette, (400, 400), ppi)
    x, y = placement.to_master(np.array([u]), np.array([v]))
    back_u, back_v = placement.to_image(x, y)
    assert back_u[0] == pytest.approx(u, abs=1e-3)
    assert back_v[0] == pytest.approx(v, abs=1e-3)
