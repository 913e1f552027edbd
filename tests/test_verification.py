"""Choosing the decoding threshold by how well templates verify fingers, not by label agreement."""

from __future__ import annotations

import numpy as np

from edge.extraction import MinutiaeExtractor
from hil.fingers import FingerGenerator
from models.train.data import RawImage
from models.train.verification import matching_threshold


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
