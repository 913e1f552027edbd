"""Score a model on the HIL generator's synthetic impressions, whose minutiae are exact.

``python -m models.train.synthetic_check --model models/ --fingers 20 --impressions 4``: data
from outside the corpus, never seen in training. Per condition it reports minutiae precision,
recall and F1 against the exact minutiae (an independent check of the position and direction
conventions: the corpus labels come from another extractor) and the verification error rates
of the extracted templates under the project's matcher, beside those of the exact minutiae
themselves (what a perfect extractor would reach on these impressions).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge.extraction import MinutiaeExtractor
from edge.matching import MccTemplate
from edge.minutiae import Minutia
from edge.templates import best_minutiae
from hil.fingers import QUALITIES, FingerGenerator, Impression, Quality
from models.train.evaluate import Score, image_score
from models.train.verification import protocol_pairs, verify


def _labels(minutiae: list[Minutia]) -> NDArray[np.float32]:
    """Rows as the corpus labels have them: x, y, direction in pixel axes (y down), kind."""
    rows = [
        (m.x, m.y, math.cos(math.radians(m.angle)), -math.sin(math.radians(m.angle)), int(m.kind))
        for m in minutiae
    ]
    return np.array(rows, dtype=np.float32).reshape(-1, 5)


@dataclass(frozen=True)
class ConditionReport:
    """One capture condition: agreement with the exact minutiae and verification error rates."""

    minutiae: Score
    extracted: dict[str, Any]  # error rates (%) of the extracted templates, both protocols
    exact: dict[str, Any]  # the same for the exact minutiae
    genuine_pairs: int
    impostor_pairs: int  # all cross-finger pairs

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.minutiae.as_dict(),
            "verification": {"extracted": self.extracted, "exact_minutiae": self.exact},
            "genuine_pairs": self.genuine_pairs,
            "impostor_pairs": self.impostor_pairs,
        }


def check_condition(
    extractor: MinutiaeExtractor,
    generator: FingerGenerator,
    quality: Quality,
    fingers: int,
    impressions: int,
) -> ConditionReport:
    """Every impression of ``fingers`` fingers in one condition, extracted and compared."""
    if fingers < 2 or impressions < 2:
        raise ValueError("verification needs at least 2 fingers with 2 impressions each")
    captured: list[Impression] = [
        generator.impression(finger, index, quality=quality)
        for finger in range(fingers)
        for index in range(impressions)
    ]
    total = Score(0, 0, 0)
    extracted: list[MccTemplate] = []
    exact: list[MccTemplate] = []
    for impression in captured:
        found = extractor.extract(impression.image, impression.ppi)
        total = total + image_score(found, _labels(impression.minutiae))
        extracted.append(MccTemplate.build(best_minutiae(found), impression.ppi))
        exact.append(MccTemplate.build(best_minutiae(impression.minutiae), impression.ppi))
    pairs = protocol_pairs([(i.finger_id, i.impression_id) for i in captured])

    def rates(templates: list[MccTemplate]) -> dict[str, Any]:
        return {k: v.as_percent() for k, v in verify(templates, pairs).rates.items()}

    return ConditionReport(
        total, rates(extracted), rates(exact), len(pairs.genuine), len(pairs.all_impostor)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.train.synthetic_check")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--fingers", type=int, default=20)
    parser.add_argument("--impressions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    extractor = MinutiaeExtractor.load(args.model)
    generator = FingerGenerator(args.seed)
    report = {
        str(quality): check_condition(
            extractor, generator, quality, args.fingers, args.impressions
        ).as_dict()
        for quality in QUALITIES
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
