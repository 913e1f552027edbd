"""Choosing the decoding threshold by how well templates verify fingers, not by label agreement."""

from __future__ import annotations

import numpy as np

from edge.extraction import MinutiaeExtractor
from edge.minutiae import Minutia, MinutiaKind
from edge.templates import best_minutiae
from hil.fingers import FingerGenerator
from models.train.data import RawImage
from models.train.verification import database_error_rates, matching_threshold


def _database(name: str, seed: int) -> list[RawImage]:
    generator = FingerGenerator(seed=seed)
    images = []
    for finger in range(3):
        for impression in range(2):
            shot = generator.impression(finger, impression, width=288, height=384)
            images.append(
                RawImage(
                    f"{101 + finger}_{impression + 1}",
                    name,
                    500.0,
                    shot.image,
                    np.zeros((0, 5), np.float32),
                )
            )
    return images


def test_the_chosen_threshold_has_the_lowest_mean_eer_and_ties_prefer_fewer_minutiae() -> None:
    images = _database("DB1_B", 3) + _database("DB3_B", 4)
    candidates = [0.3, 0.5, 0.97]
    best, mean_eer = matching_threshold(MinutiaeExtractor.load(), images, candidates)
    assert list(mean_eer) == candidates
    assert all(0.0 <= e <= 1.0 for e in mean_eer.values())
    lowest = min(mean_eer.values())
    assert mean_eer[best] == lowest
    assert best == max(t for t, e in mean_eer.items() if e == lowest)
    # a threshold so high that hardly any minutia survives cannot verify these fingers
    assert mean_eer[0.97] > lowest


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
