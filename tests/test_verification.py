"""Choosing the decoding from how well templates verify fingers, then from label agreement."""

from __future__ import annotations

import numpy as np

from edge.extraction import MinutiaeExtractor
from edge.minutiae import Minutia, MinutiaKind
from edge.templates import best_minutiae
from hil.fingers import FingerGenerator
from models.train.data import RawImage
from models.train.evaluate import Score, with_decoding
from models.train.verification import (
    DecodingPoint,
    best_f1_near_lowest_eer,
    database_error_rates,
    decoding_grid,
    highest_threshold_within,
    lowest_eer,
)


def _database(name: str, seed: int, ppi: float = 500.0) -> list[RawImage]:
    generator = FingerGenerator(seed=seed)
    images = []
    for finger in range(3):
        for impression in range(2):
            shot = generator.impression(finger, impression, width=288, height=384)
            images.append(
                RawImage(
                    f"{101 + finger}_{impression + 1}",
                    name,
                    ppi,
                    shot.image,
                    np.zeros((0, 5), np.float32),
                )
            )
    return images


def test_the_grid_scores_every_threshold_and_radius_and_a_starved_threshold_verifies_worse() -> (
    None
):
    images = _database("DB1_B", 3) + _database("DB3_B", 4)
    points = decoding_grid(MinutiaeExtractor.load(), images, [0.3, 0.97], [8.0, 14.0])
    assert [(p.presence_threshold, p.nms_radius) for p in points] == [
        (0.3, 8.0),
        (0.3, 14.0),
        (0.97, 8.0),
        (0.97, 14.0),
    ]
    assert all(0.0 <= p.mean_eer <= 1.0 for p in points)
    # these synthetic prints carry no labels: every minutia found is unmatched
    assert all(p.agreement.labelled == 0 and p.agreement.matched == 0 for p in points)
    # a threshold so high that hardly any minutia survives cannot verify these fingers
    assert min(p.mean_eer for p in points[2:]) > lowest_eer(points).mean_eer
    # a wider suppression radius leaves fewer minutiae at the same threshold
    assert points[1].agreement.found < points[0].agreement.found


def test_each_grid_point_scores_what_the_model_decoded_with_that_setting_finds() -> None:
    # 569 ppi (DB2's) so the minutiae go back through a resampling, as on the corpus
    images = _database("DB2_B", 5, ppi=569.0)
    extractor = MinutiaeExtractor.load()
    points = decoding_grid(extractor, images, [0.3, 0.5], [8.0, 16.0])
    for point in points:
        tuned = with_decoding(
            extractor, presence_threshold=point.presence_threshold, nms_radius=point.nms_radius
        )
        found = [tuned.extract(i.pixels, i.ppi) for i in images]
        assert point.agreement.found == sum(len(f) for f in found) > 0
        assert point.mean_eer == database_error_rates(images, found)["all_impostors"].eer


def _point(threshold: float, radius: float, eer: float, matched: int) -> DecodingPoint:
    return DecodingPoint(threshold, radius, eer, Score(found=100, labelled=100, matched=matched))


def test_lowest_eer_breaks_ties_towards_fewer_minutiae() -> None:
    points = [_point(0.3, 8.0, 0.02, 70), _point(0.4, 8.0, 0.02, 60), _point(0.5, 8.0, 0.03, 80)]
    assert lowest_eer(points) == points[1]


def test_best_f1_near_lowest_eer_takes_agreement_only_within_the_eer_slack() -> None:
    points = [
        _point(0.25, 8.0, 0.0100, 70),  # verifies best
        _point(0.30, 10.0, 0.0119, 78),  # within 0.2 points: the best agreement that qualifies
        _point(0.40, 12.0, 0.0121, 90),  # agrees better but verifies just outside the slack
    ]
    assert best_f1_near_lowest_eer(points, 0.002) == points[1]
    assert best_f1_near_lowest_eer(points, 0.0) == points[0]
    assert best_f1_near_lowest_eer(points, 0.01) == points[2]


def test_best_f1_near_lowest_eer_breaks_ties_towards_the_wider_radius_then_higher_threshold() -> (
    None
):
    points = [
        _point(0.30, 10.0, 0.010, 80),
        _point(0.35, 10.0, 0.010, 80),
        _point(0.25, 12.0, 0.011, 80),
    ]
    assert best_f1_near_lowest_eer(points, 0.002) == points[2]
    assert best_f1_near_lowest_eer(points[:2], 0.002) == points[1]


def test_a_print_with_more_minutiae_than_a_template_holds_is_matched_on_its_best_255() -> None:
    # An untrained or badly tuned model can report hundreds; the kiosk's template keeps 255.
    images = _database("DB1_B", 5)
    rng = np.random.default_rng(1)
    crowded = [
        [
            Minutia(float(x), float(y), float(a), MinutiaKind.ENDING, int(q))
            for x, y, a, q in zip(
                rng.uniform(10, 270, 300),
                rng.uniform(10, 370, 300),
                rng.uniform(0, 2 * np.pi, 300),
                rng.integers(0, 101, 300),
                strict=True,
            )
        ]
        for _ in images
    ]
    rates = database_error_rates(images, crowded)
    assert set(rates) == {"fvc", "all_impostors"}


def test_best_minutiae_keeps_the_255_of_highest_quality_in_their_order() -> None:
    many = [Minutia(float(i), 0.0, 0.0, MinutiaKind.ENDING, i % 101) for i in range(400)]
    kept = best_minutiae(many)
    assert len(kept) == 255
    assert min(m.quality for m in kept) >= max(m.quality for m in many if m not in kept)
    tied = [m for m in kept if m.quality == kept[-1].quality]
    assert [m.x for m in tied] == sorted(m.x for m in tied)  # ties keep their order
    assert best_minutiae(many[:10]) == sorted(many[:10], key=lambda m: -m.quality)


def test_the_eer_budget_buys_the_highest_threshold_that_verifies_within_it() -> None:
    points = [
        _point(0.25, 8.0, 0.0090, 60),  # verifies best
        _point(0.30, 8.0, 0.0130, 70),
        _point(0.35, 8.0, 0.0150, 75),  # the highest within 1.5 %
        _point(0.40, 8.0, 0.0180, 80),
        _point(0.45, 8.0, 0.0140, 82),  # verifies better than 0.40: the budget is not a cut-off
    ]
    assert highest_threshold_within(points, 0.015) == points[4]
    assert highest_threshold_within(points[:4], 0.015) == points[2]
    assert highest_threshold_within(points[:4], 0.0130) == points[1]


def test_with_no_threshold_inside_the_eer_budget_the_best_verifying_one_is_taken() -> None:
    points = [_point(0.25, 8.0, 0.012, 60), _point(0.30, 8.0, 0.011, 70)]
    assert highest_threshold_within(points, 0.005) == points[1] == lowest_eer(points)
