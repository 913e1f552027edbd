"""Decoding the network's heads into minutia candidates: gating, margin, offsets, suppression."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray

from edge.extraction import (
    HEAD_CHANNELS,
    DecodingSpec,
    _greedy_survivors,
    _sigmoid,
    decode_heads,
)

DECODING = DecodingSpec(
    cell_size=8, presence_threshold=0.5, foreground_threshold=0.5, nms_radius=8.0, border_margin=8.0
)
SURE, DOUBT = 6.0, -6.0  # logits


def heads(rows: int = 10, cols: int = 10) -> NDArray[np.float32]:
    """Nothing anywhere, all on the finger, offsets at the cell centre, directions along x."""
    values = np.zeros((len(HEAD_CHANNELS), rows, cols), dtype=np.float32)
    values[0] = DOUBT
    values[3] = 1.0
    values[6] = SURE
    return values


def test_a_confident_cell_becomes_a_candidate_at_its_offset_and_direction() -> None:
    h = heads()
    h[0, 4, 5] = SURE
    h[1, 4, 5] = 0.0  # sigmoid 0.5: the middle of the cell
    h[2, 4, 5] = math.log(3.0)  # sigmoid 0.75
    h[3, 4, 5], h[4, 4, 5] = 0.0, 2.0  # straight up in the ISO sense: 90 degrees
    h[5, 4, 5] = SURE

    found = decode_heads(h, 80, 80, DECODING)

    assert len(found) == 1
    assert math.isclose(found.x[0], (5 + 0.5) * 8 - 0.5)
    assert math.isclose(found.y[0], (4 + 0.75) * 8 - 0.5, rel_tol=1e-6)
    assert math.isclose(found.angle[0], 90.0, abs_tol=1e-4)
    assert found.bifurcation[0] and found.probability[0] > 0.99


def test_cells_off_the_finger_or_in_the_border_margin_give_nothing() -> None:
    h = heads()
    h[0, 4, 4] = SURE
    h[6, 4, 4] = DOUBT  # background
    h[0, 0, 6] = SURE
    h[2, 0, 6] = DOUBT  # y about 0: inside the 8-pixel margin
    assert len(decode_heads(h, 80, 80, DECODING)) == 0


def test_of_two_candidates_closer_than_the_radius_only_the_stronger_is_kept() -> None:
    h = heads()
    h[0, 4, 4], h[0, 4, 5] = 3.0, 4.0  # neighbouring cells: 8 px apart at the centres
    h[1, 4, 4], h[1, 4, 5] = 2.0, -2.0  # pulled towards each other
    h[0, 7, 2] = 2.0  # weaker but far away

    found = decode_heads(h, 80, 80, DECODING)

    assert [round(float(p), 3) for p in found.probability] == [0.982, 0.881]
    assert found.x[0] > 5 * 8 and found.y[1] > 7 * 8


@given(st.integers(0, 2**32 - 1), st.floats(0.01, 0.99), st.floats(0.0, 0.99))
def test_a_cell_is_a_candidate_exactly_when_its_probabilities_clear_the_thresholds(
    seed: int, presence: float, foreground: float
) -> None:
    rng = np.random.default_rng(seed)
    h = rng.normal(0.0, 3.0, size=(len(HEAD_CHANNELS), 6, 6)).astype(np.float32)
    h[1:3] = 0.0  # every point at its cell's centre, well inside the image
    # logits at and next to the thresholds' own, where a gate on logits could go wrong
    for channel, threshold in ((0, presence), (6, foreground)):
        edge = np.float32(math.log(threshold / (1 - threshold))) if threshold > 0 else -30.0
        near = [np.nextafter(edge, -np.inf), edge, np.nextafter(edge, np.inf)]
        h[channel].flat[rng.choice(36, size=12, replace=False)] = np.repeat(near, 4)
    spec = DecodingSpec(
        cell_size=8,
        presence_threshold=presence,
        foreground_threshold=foreground,
        nms_radius=0.0,  # no two cells' points coincide, so nothing is suppressed
        border_margin=0.0,
    )

    found = decode_heads(h, 48, 48, spec)

    chance = _sigmoid(h[0])
    expected = chance[(chance > presence) & (_sigmoid(h[6]) > foreground)]
    assert sorted(found.probability.tolist()) == sorted(expected.tolist())


def _greedy_by_hand(points: list[tuple[float, float]], radius: float) -> list[int]:
    kept: list[int] = []
    for i, (x, y) in enumerate(points):
        if all((x - points[k][0]) ** 2 + (y - points[k][1]) ** 2 > radius**2 for k in kept):
            kept.append(i)
    return kept


coordinates = st.floats(0.0, 60.0, allow_nan=False)


@given(st.lists(st.tuples(coordinates, coordinates), max_size=40), st.floats(0.0, 20.0))
def test_suppression_keeps_what_one_point_at_a_time_greedy_keeps(
    points: list[tuple[float, float]], radius: float
) -> None:
    xs = np.array([p[0] for p in points], dtype=np.float64)
    ys = np.array([p[1] for p in points], dtype=np.float64)
    assert _greedy_survivors(xs, ys, radius).tolist() == _greedy_by_hand(points, radius)
