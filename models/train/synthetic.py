"""Synthetic training impressions with exact minutiae, stored as labels the seed regenerates.

``python -m models.train.synthetic --seed 3 --fingers 100 --impressions 4 --out DIR`` writes
``DIR/synthetic_truth.npz`` (the generator's true minutiae, score 1) and, with ``--leader``,
``DIR/synthetic_leader.npz`` plus LEADER's agreement with the truth in ``DIR/synthetic.json``.
No pixels are stored: each image's name says how to render it again (seed, finger, impression,
quality, sensor size; the store's ppi) and its sha256 proves the rendering is unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hil.fingers import QUALITIES, FingerGenerator, Impression, Quality
from models.train.data import SYNTHETIC, RawImage
from models.train.distill import (
    REFERENCE_THRESHOLDS,
    Offsets,
    agreement,
    leader_labeller,
    offsets,
)
from models.train.evaluate import Score
from models.train.label_store import LabelSet, LabelStoreError, pixels_sha256, training_rows

TRUTH_FILE = "synthetic_truth.npz"
LEADER_FILE = "synthetic_leader.npz"
SUMMARY_FILE = "synthetic.json"
# The FVC2002 sensors (width, height, ppi): the real images the model must read.
SENSORS: tuple[tuple[int, int, float], ...] = (
    (388, 374, 500.0),
    (296, 560, 569.0),
    (300, 300, 500.0),
    (288, 384, 500.0),
)
_PLAN_STREAM = 101  # apart from the generator's own streams for the same ids
_NAME = re.compile(r"(\d{1,9})/(\d{1,9})/(\d{1,9})/([a-z]{1,8})/(\d{2,4})x(\d{2,4})")


@dataclass(frozen=True)
class Capture:
    """One synthetic impression, enough to render it again bit for bit."""

    seed: int
    finger: int
    impression: int
    quality: Quality
    width: int
    height: int
    ppi: float

    @property
    def name(self) -> str:
        return (
            f"{self.seed}/{self.finger}/{self.impression}/{self.quality}/{self.width}x{self.height}"
        )

    @classmethod
    def parse(cls, name: str, ppi: float) -> Capture:
        match = _NAME.fullmatch(name)
        if match is None:
            raise LabelStoreError(f"not a synthetic image name: {name!r}")
        seed, finger, impression, quality, width, height = match.groups()
        if quality not in QUALITIES:
            raise LabelStoreError(f"{name!r}: quality must be one of {QUALITIES}")
        if not (16 <= int(width) <= 2048 and 16 <= int(height) <= 2048 and 250 <= ppi <= 1000):
            raise LabelStoreError(f"{name!r} at {ppi} ppi: outside what the generator renders")
        known = QUALITIES[QUALITIES.index(quality)]
        capture = cls(int(seed), int(finger), int(impression), known, int(width), int(height), ppi)
        if capture.name != name:
            raise LabelStoreError(f"not a synthetic image name in canonical form: {name!r}")
        return capture

    def render(self, generator: FingerGenerator) -> Impression:
        if generator.seed != self.seed:
            raise ValueError(f"{self.name} needs seed {self.seed}, not {generator.seed}")
        return generator.impression(
            self.finger, self.impression, self.width, self.height, self.ppi, self.quality
        )


def plan(seed: int, fingers: int, impressions: int) -> list[Capture]:
    """Captures finger by finger, each on a seeded choice of FVC sensor and skin quality."""
    captures = []
    for finger in range(fingers):
        for impression in range(impressions):
            rng = np.random.default_rng([seed, finger, impression, _PLAN_STREAM])
            width, height, ppi = SENSORS[int(rng.integers(len(SENSORS)))]
            quality = QUALITIES[int(rng.integers(len(QUALITIES)))]
            captures.append(Capture(seed, finger, impression, quality, width, height, ppi))
    return captures


def truth_rows(impression: Impression) -> NDArray[np.float32]:
    rows = [(m.x, m.y, m.angle, int(m.kind), 1.0) for m in impression.minutiae]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


def synthetic_raw_images(
    labels: LabelSet,
    min_score: float = 0.0,
    only: set[int] | None = None,
    cache: Path | None = None,
) -> Iterator[RawImage]:
    """Render the images of a synthetic store again (those indexed by ``only``, or all).

    With ``cache``, an image already rendered there is read back instead (its sha256 still
    checked); a new rendering is saved there. Raises :class:`LabelStoreError` when a rendering
    differs from the one labelled (the generator changed since the store was written).
    """
    chosen = [i for i in range(len(labels)) if only is None or i in only]
    captures = [Capture.parse(str(labels.names[i]), float(labels.ppi[i])) for i in chosen]
    generators: dict[int, FingerGenerator] = {}
    for i, capture in zip(chosen, captures, strict=True):
        expected = str(labels.image_sha256[i])
        pixels = _cached(cache, expected)
        if pixels is None:
            if capture.seed not in generators:
                generators[capture.seed] = FingerGenerator(capture.seed)
            pixels = capture.render(generators[capture.seed]).image
            if pixels_sha256(pixels) != expected:
                raise LabelStoreError(f"{capture.name}: the generator now renders other pixels")
            _keep(cache, expected, pixels)
        rows = training_rows(labels.rows(i), min_score)
        yield RawImage(capture.name, SYNTHETIC, capture.ppi, pixels, rows)


def _cached(cache: Path | None, sha256: str) -> NDArray[np.uint8] | None:
    """A rendering saved earlier, if there is one and it is still the image labelled."""
    if cache is None:
        return None
    try:
        pixels = np.load(cache / f"{sha256}.npy", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels_sha256(pixels) != sha256:
        return None
    return np.asarray(pixels, dtype=np.uint8)


def _keep(cache: Path | None, sha256: str, pixels: NDArray[np.uint8]) -> None:
    if cache is None:
        return
    cache.mkdir(parents=True, exist_ok=True)
    # runs side by side fill the same cache: write aside, then rename into place atomically
    partial = cache / f".{sha256}.{os.getpid()}.npy"
    np.save(partial, pixels, allow_pickle=False)
    partial.replace(cache / f"{sha256}.npy")


def _leader_report(truth: LabelSet, leader: LabelSet, qualities: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for threshold in REFERENCE_THRESHOLDS:
        totals: dict[str, Score] = {}
        moved = Offsets([], [], [])
        for i, quality in enumerate(qualities):
            labels = training_rows(truth.rows(i))
            s = agreement(leader.rows(i), labels, threshold)
            o = offsets(leader.rows(i), labels, threshold)
            moved.dx.extend(o.dx)
            moved.dy.extend(o.dy)
            moved.turn.extend(o.turn)
            for key in (quality, "all"):
                totals[key] = totals.get(key, Score(0, 0, 0)) + s
        report[f"score>={threshold}"] = {k: v.as_dict() for k, v in totals.items()}
        if moved.turn:
            report[f"score>={threshold}"]["offsets_vs_truth"] = moved.summary()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.train.synthetic", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--fingers", type=int, required=True)
    parser.add_argument("--impressions", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--leader", action="store_true", help="also label them with LEADER")
    args = parser.parse_args(argv)
    if args.seed < 0 or args.fingers < 1 or args.impressions < 1:
        parser.error("--seed must be >= 0, --fingers and --impressions >= 1")
    captures = plan(args.seed, args.fingers, args.impressions)
    entries = []
    leader_entries = []
    render_seconds: list[float] = []
    leader_seconds: list[float] = []
    generator = FingerGenerator(args.seed)
    with leader_labeller() if args.leader else nullcontext() as label:
        for n, capture in enumerate(captures, 1):
            started = time.perf_counter()
            impression = capture.render(generator)
            render_seconds.append(time.perf_counter() - started)
            digest = pixels_sha256(impression.image)
            entries.append((capture.name, digest, capture.ppi, truth_rows(impression)))
            if label is not None:
                start = time.perf_counter()
                rows = label(impression.image, capture.ppi)
                leader_seconds.append(time.perf_counter() - start)
                leader_entries.append((capture.name, digest, capture.ppi, rows))
            if n % 20 == 0 or n == len(captures):
                print(f"{n}/{len(captures)} impressions", flush=True)
    truth = LabelSet.build(entries)
    truth.save(args.out / TRUTH_FILE)
    summary: dict[str, Any] = {
        "generator": "hil.fingers.FingerGenerator",
        "impressions": len(captures),
        "qualities": {q: sum(c.quality == q for c in captures) for q in QUALITIES},
        "true_minutiae": len(truth.minutiae),
        "render_seconds_total": round(sum(render_seconds), 1),
        "render_ms_median": round(1000 * statistics.median(render_seconds), 1),
        "command": "python -m models.train.synthetic "
        + shlex.join(sys.argv[1:] if argv is None else argv),
    }
    if leader_entries:
        leader = LabelSet.build(leader_entries)
        leader.save(args.out / LEADER_FILE)
        summary["leader_seconds_total"] = round(sum(leader_seconds), 1)
        summary["leader_ms_median"] = round(1000 * statistics.median(leader_seconds), 1)
        summary["leader_vs_truth"] = _leader_report(truth, leader, [c.quality for c in captures])
    (args.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
