"""Score a model on the HIL generator's synthetic impressions, whose minutiae are exact.

``python -m models.train.synthetic_check --model models/ --fingers 20``: an independent check of
position and direction conventions (the corpus labels come from another extractor).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from edge.extraction import MinutiaeExtractor
from hil.fingers import QUALITIES, FingerGenerator
from models.train.evaluate import Score, match_pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.train.synthetic_check")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--fingers", type=int, default=20)
    parser.add_argument("--impressions", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    extractor = MinutiaeExtractor.load(args.model)
    generator = FingerGenerator(args.seed)
    totals: dict[str, Score] = {}
    for quality in QUALITIES:
        total = Score(0, 0, 0)
        for finger in range(args.fingers):
            for index in range(args.impressions):
                impression = generator.impression(finger, index, quality=quality)
                labels = np.array(
                    [
                        (
                            m.x,
                            m.y,
                            math.cos(math.radians(m.angle)),
                            -math.sin(math.radians(m.angle)),
                            int(m.kind),
                        )
                        for m in impression.minutiae
                    ],
                    dtype=np.float32,
                ).reshape(-1, 5)
                found = extractor.extract(impression.image, impression.ppi)
                pairs = match_pairs(found, labels)
                same = sum(int(found[i].kind) == int(labels[j, 4]) for i, j in pairs)
                total = total + Score(len(found), len(labels), len(pairs), same)
        totals[str(quality)] = total
    print(json.dumps({k: v.as_dict() for k, v in totals.items()}, indent=2))


if __name__ == "__main__":
    main()
