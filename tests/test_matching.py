"""The MCC matcher: what scores high, what scores low, and inputs it must survive."""

from __future__ import annotations

import math
import statistics
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.matching import MccTemplate, compare
from edge.minutiae import Minutia, MinutiaKind
from hil.fingers import FingerGenerator

FINGERS = 3
IMPRESSIONS = 2


@pytest.fixture(scope="module")
def impressions() -> dict[tuple[int, int], list[Minutia]]:
    """True minutiae of a few impressions of a few synthetic fingers."""
    generator = FingerGenerator(seed=31)
    return {
        (f, i): generator.impression(f, i, width=300, height=400).minutiae
        for f in range(FINGERS)
        for i in range(IMPRESSIONS)
    }


@pytest.fixture(scope="module")
def print_minutiae(impressions: dict[tuple[int, int], list[Minutia]]) -> list[Minutia]:
    return impressions[0, 0]


def rotated(minutiae: list[Minutia], degrees: float, dx: float, dy: float) -> list[Minutia]:
    """The print turned counter-clockwise on screen about the origin, then shifted."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return [
        Minutia(
            c * m.x + s * m.y + dx, -s * m.x + c * m.y + dy, (m.angle + degrees) % 360, m.kind, 0
        )
        for m in minutiae
    ]


def mirrored(minutiae: list[Minutia], width: float = 300.0) -> list[Minutia]:
    """The print seen from behind the glass: left and right swapped."""
    return [Minutia(width - m.x, m.y, (180.0 - m.angle) % 360, m.kind, 0) for m in minutiae]


def test_a_print_scores_near_one_against_itself(print_minutiae: list[Minutia]) -> None:
    template = MccTemplate.build(print_minutiae)
    assert len(template) > 10
    assert compare(template, template) > 0.95


@pytest.mark.parametrize("degrees", [15.0, 90.0, 115.0, 245.0, 330.0])
def test_a_rotated_and_shifted_copy_scores_as_high_as_the_original(
    print_minutiae: list[Minutia], degrees: float
) -> None:
    original = MccTemplate.build(print_minutiae)
    turned = MccTemplate.build(rotated(print_minutiae, degrees, 250.0, -40.0))
    assert compare(original, turned) > 0.95
    assert compare(original, turned) == pytest.approx(compare(original, original), abs=0.01)


def test_a_print_turned_upside_down_is_beyond_the_rotation_the_matcher_accepts(
    print_minutiae: list[Minutia],
) -> None:
    original = MccTemplate.build(print_minutiae)
    upside_down = MccTemplate.build(rotated(print_minutiae, 180.0, 300.0, 400.0))
    assert compare(original, upside_down) < 0.2


def test_a_mirrored_copy_scores_low(print_minutiae: list[Minutia]) -> None:
    """Handedness: a left-right flip is a different finger, not the same one seen again."""
    original = MccTemplate.build(print_minutiae)
    flipped = MccTemplate.build(mirrored(print_minutiae))
    assert compare(original, flipped) < 0.2
    # ... and not because the flip broke the template: it still matches itself.
    assert compare(flipped, flipped) > 0.95


def test_different_synthetic_fingers_score_low(
    impressions: dict[tuple[int, int], list[Minutia]],
) -> None:
    templates = {k: MccTemplate.build(v) for k, v in impressions.items() if k[1] == 0}
    for a, b in combinations(templates, 2):
        assert compare(templates[a], templates[b]) < 0.2


def test_impressions_of_one_finger_score_higher_than_impressions_of_others(
    impressions: dict[tuple[int, int], list[Minutia]],
) -> None:
    templates = {k: MccTemplate.build(v) for k, v in impressions.items()}
    genuine: list[float] = []
    impostor: list[float] = []
    for a, b in combinations(sorted(templates), 2):
        (genuine if a[0] == b[0] else impostor).append(compare(templates[a], templates[b]))
    assert statistics.fmean(genuine) > statistics.fmean(impostor) + 0.2
    assert min(genuine) > max(impostor)


def test_a_partial_print_still_matches_its_whole(print_minutiae: list[Minutia]) -> None:
    """A finger laid off-centre shows only part of the print."""
    whole = MccTemplate.build(print_minutiae)
    middle = statistics.median(m.y for m in print_minutiae)
    upper = MccTemplate.build([m for m in print_minutiae if m.y < middle + 40])
    other = MccTemplate.build(mirrored(print_minutiae))
    assert compare(whole, upper) > 0.5
    assert compare(whole, upper) > 2 * compare(whole, other)


def test_score_is_symmetric_and_deterministic(
    impressions: dict[tuple[int, int], list[Minutia]],
) -> None:
    a = MccTemplate.build(impressions[0, 0])
    b = MccTemplate.build(impressions[0, 1])
    again = MccTemplate.build(impressions[0, 1])
    # Cylinders are float32: the two orders sum their dot products differently, and how much
    # that moves the score depends on the CPU's BLAS kernels (8e-9 seen on an AMD EPYC).
    assert compare(a, b) == pytest.approx(compare(b, a), abs=1e-6)
    assert compare(a, b) == compare(a, again)


def test_templates_at_another_resolution_are_compared_at_500_ppi(
    print_minutiae: list[Minutia],
) -> None:
    doubled = [Minutia(2 * m.x, 2 * m.y, m.angle, m.kind, 0) for m in print_minutiae]
    native = MccTemplate.build(print_minutiae)
    assert compare(native, MccTemplate.build(doubled, ppi=1000.0)) > 0.95
    # Read as 500 ppi, the same numbers describe a finger twice the size.
    assert compare(native, MccTemplate.build(doubled)) < 0.2


def test_cells_off_the_foreground_do_not_count(print_minutiae: list[Minutia]) -> None:
    nowhere = np.zeros((400, 300), dtype=bool)
    everywhere = np.ones((400, 300), dtype=bool)
    assert len(MccTemplate.build(print_minutiae, foreground=nowhere)) == 0
    on_print = MccTemplate.build(print_minutiae, foreground=everywhere)
    assert compare(on_print, MccTemplate.build(print_minutiae)) > 0.8


@pytest.mark.parametrize("count", [0, 1, 2])
def test_empty_and_tiny_templates_score_zero(print_minutiae: list[Minutia], count: int) -> None:
    tiny = MccTemplate.build(print_minutiae[:count])
    full = MccTemplate.build(print_minutiae)
    assert len(tiny) == 0
    assert compare(tiny, full) == 0.0
    assert compare(full, tiny) == 0.0
    assert compare(tiny, tiny) == 0.0


def with_quality(minutiae: list[Minutia], quality: int) -> list[Minutia]:
    return [Minutia(m.x, m.y, m.angle, m.kind, quality) for m in minutiae]


def test_spurious_minutiae_of_low_quality_disturb_the_score_less(
    print_minutiae: list[Minutia],
) -> None:
    rng = np.random.default_rng(8)
    spurious = [
        Minutia(float(x), float(y), float(a), MinutiaKind.ENDING, 0)
        for x, y, a in zip(
            rng.uniform(20, 280, 25), rng.uniform(20, 380, 25), rng.uniform(0, 360, 25), strict=True
        )
    ]
    clean = MccTemplate.build(with_quality(print_minutiae, 90))
    genuine = with_quality(rotated(print_minutiae, 10.0, 5.0, -4.0), 90)
    moved = rotated(spurious, 10.0, 5.0, -4.0)
    doubtful = MccTemplate.build(genuine + with_quality(moved, 20))
    confident = MccTemplate.build(genuine + with_quality(moved, 90))
    assert compare(clean, doubtful) > compare(clean, confident) + 0.05


def test_a_template_without_qualities_weighs_every_minutia_fully(
    print_minutiae: list[Minutia],
) -> None:
    unreported = MccTemplate.build(with_quality(print_minutiae, 0))
    full = MccTemplate.build(with_quality(print_minutiae, 100))
    halved = MccTemplate.build(with_quality(print_minutiae, 50))
    assert np.array_equal(unreported.values, full.values)
    assert not np.array_equal(halved.values, full.values)


def test_unusable_input_is_refused_with_a_reason() -> None:
    good = Minutia(10.0, 10.0, 0.0, MinutiaKind.ENDING, 0)
    with pytest.raises(ValueError, match="ppi"):
        MccTemplate.build([good], ppi=0.0)
    with pytest.raises(ValueError, match="finite"):
        MccTemplate.build([good, Minutia(math.nan, 1.0, 0.0, MinutiaKind.ENDING, 0)])
    with pytest.raises(ValueError, match="2-D"):
        MccTemplate.build([good], foreground=np.ones(5, dtype=bool))
    with pytest.raises(ValueError, match=r"0\.\.100"):
        MccTemplate.build([good, Minutia(1.0, 1.0, 0.0, MinutiaKind.ENDING, 101)])
    with pytest.raises(ValueError, match="256 minutiae"):
        MccTemplate.build([good] * 256)


def test_a_full_iso_template_builds_in_bounded_memory() -> None:
    """255 minutiae, the most a record holds, packed densely: every cylinder is crowded."""
    rng = np.random.default_rng(3)
    crowd = [
        Minutia(float(x), float(y), float(a), MinutiaKind.ENDING, 0)
        for x, y, a in zip(
            rng.uniform(0, 300, 255),
            rng.uniform(0, 300, 255),
            rng.uniform(0, 360, 255),
            strict=True,
        )
    ]
    template = MccTemplate.build(crowd)
    assert len(template) > 200
    assert compare(template, template) > 0.9


minutia = st.builds(
    Minutia,
    x=st.floats(0, 300),
    y=st.floats(0, 300),
    angle=st.floats(0, 359.99),
    kind=st.sampled_from(list(MinutiaKind)),
    quality=st.just(0),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(minutia, max_size=25), st.lists(minutia, max_size=25))
def test_any_two_templates_score_within_zero_and_one_either_way_round(
    a: list[Minutia], b: list[Minutia]
) -> None:
    ta, tb = MccTemplate.build(a), MccTemplate.build(b)
    score = compare(ta, tb)
    assert 0.0 <= score <= 1.0
    assert score == pytest.approx(compare(tb, ta), abs=1e-6)
