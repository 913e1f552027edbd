"""Minutiae precision/recall/F1 against the corpus labels: 12 px, 30 degrees, one-to-one."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.extraction import MinutiaeExtractor
from edge.minutiae import Minutia
from models.train.data import DATABASE_PPI, RawImage, load_raw_corpus

DISTANCE_PX = 12.0
ANGLE_DEG = 30.0


@dataclass(frozen=True)
class Score:
    found: int
    labelled: int
    matched: int
    same_type: int = 0  # matched pairs that also agree on ending/bifurcation

    @property
    def precision(self) -> float:
        return self.matched / self.found if self.found else 0.0

    @property
    def recall(self) -> float:
        return self.matched / self.labelled if self.labelled else 0.0

    @property
    def f1(self) -> float:
        total = self.found + self.labelled
        return 2 * self.matched / total if total else 0.0

    def __add__(self, other: Score) -> Score:
        return Score(
            self.found + other.found,
            self.labelled + other.labelled,
            self.matched + other.matched,
            self.same_type + other.same_type,
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "found": self.found,
            "labelled": self.labelled,
            "matched": self.matched,
            "type_agreement": round(self.same_type / self.matched, 4) if self.matched else 0.0,
        }


def label_angles(labels: np.ndarray) -> np.ndarray:
    """ISO angles (degrees) of label rows whose direction is in pixel axes, y down."""
    angles: np.ndarray = np.degrees(np.arctan2(-labels[:, 3], labels[:, 2])) % 360.0
    return angles


def match_count(found: list[Minutia], labels: np.ndarray) -> int:
    return len(match_pairs(found, labels))


def match_pairs(found: list[Minutia], labels: np.ndarray) -> list[tuple[int, int]]:
    """Greedy one-to-one pairing by distance among pairs within both tolerances."""
    angles = label_angles(labels)
    pairs = []
    for i, m in enumerate(found):
        for j in range(len(labels)):
            distance = math.hypot(m.x - labels[j, 0], m.y - labels[j, 1])
            turn = abs((m.angle - angles[j] + 180.0) % 360.0 - 180.0)
            if distance <= DISTANCE_PX and turn <= ANGLE_DEG:
                pairs.append((distance, i, j))
    used_found: set[int] = set()
    used_label: set[int] = set()
    matched = []
    for _, i, j in sorted(pairs):
        if i not in used_found and j not in used_label:
            used_found.add(i)
            used_label.add(j)
            matched.append((i, j))
    return matched


def image_score(found: list[Minutia], labels: np.ndarray) -> Score:
    """One image's minutiae against its label rows (12 px, 30 degrees, one-to-one)."""
    pairs = match_pairs(found, labels)
    same = sum(int(found[i].kind) == int(labels[j, 4]) for i, j in pairs)
    return Score(len(found), len(labels), len(pairs), same)


def score(extractor: MinutiaeExtractor, images: list[RawImage]) -> dict[str, Score]:
    """Per database and overall ("all"), in each image's own pixels."""
    totals: dict[str, Score] = {}
    for image in images:
        s = image_score(extractor.extract(image.pixels, image.ppi), image.minutiae)
        totals[image.database] = totals.get(image.database, Score(0, 0, 0)) + s
    totals["all"] = sum(totals.values(), Score(0, 0, 0))
    return totals


def with_decoding(extractor: MinutiaeExtractor, **settings: float) -> MinutiaeExtractor:
    """The same network decoded with other manifest ``decoding`` settings."""
    manifest = extractor.manifest
    decoding = manifest.decoding.model_copy(update=settings)
    return MinutiaeExtractor(manifest.model_copy(update={"decoding": decoding}), extractor.session)


def main(argv: list[str] | None = None) -> None:
    """``python -m models.train.evaluate --model models/ --corpus ../shared/corpus DB4_B``."""
    parser = argparse.ArgumentParser(prog="python -m models.train.evaluate")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("databases", nargs="+", choices=sorted(DATABASE_PPI))
    args = parser.parse_args(argv)
    extractor = MinutiaeExtractor.load(args.model)
    totals = score(extractor, load_raw_corpus(args.corpus, args.databases))
    print(json.dumps({k: v.as_dict() for k, v in totals.items()}, indent=2))


if __name__ == "__main__":
    main()
