"""Two model directories' whole-extraction times, measured alternately in one process.

    python -m benchmarks.alternate --corpus ../shared/corpus --baseline DIR --candidate DIR
        [--databases DB1_B ...] [--precision fp32|int8] [--rounds 6] [--out DIR]

This shared machine's speed drifts by tens of percent within minutes, so two separate
benchmark runs cannot tell a 10 % change from the drift. Here every image is extracted by both
models in turn, the order swapped each round, and the figure is the median over images and
rounds of the candidate's time over the baseline's on the same image, beside each model's
median. Single-threaded, as ``benchmarks.extraction``.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, get_args  # noqa: E402

from benchmarks.report import write_report  # noqa: E402
from edge.extraction import MinutiaeExtractor, ModelError, Precision  # noqa: E402
from models.train.data import DATABASE_PPI, RawImage, load_raw_corpus  # noqa: E402

ROLES = ("baseline", "candidate")


def alternate(
    extractors: dict[str, MinutiaeExtractor], images: Sequence[RawImage], rounds: int
) -> dict[str, list[float]]:
    """Milliseconds per extraction for each role, image by image; the order swaps each round."""
    times: dict[str, list[float]] = {role: [] for role in extractors}
    for extractor in extractors.values():  # first calls allocate; keep them out of the figures
        extractor.extract(images[0].pixels, images[0].ppi)
    for n in range(rounds):
        order = list(extractors) if n % 2 == 0 else list(extractors)[::-1]
        for image in images:
            for role in order:
                start = time.perf_counter()
                extractors[role].extract(image.pixels, image.ppi)
                times[role].append((time.perf_counter() - start) * 1000)
    return times


def summary(times: dict[str, list[float]]) -> dict[str, float]:
    """Each role's median and the median per-image ratio of candidate to baseline."""
    ratios = [c / b for b, c in zip(times["baseline"], times["candidate"], strict=True)]
    return {
        "baseline_ms": round(statistics.median(times["baseline"]), 3),
        "candidate_ms": round(statistics.median(times["candidate"]), 3),
        "ratio": round(statistics.median(ratios), 4),
        "extractions_each": len(ratios),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.alternate", description=__doc__)
    parser.add_argument("--corpus", type=Path, required=True, help="the corpus (has fvc2002/)")
    parser.add_argument("--baseline", type=Path, required=True, help="a model directory")
    parser.add_argument("--candidate", type=Path, required=True, help="a model directory")
    parser.add_argument("--databases", nargs="+", default=["DB1_B"], choices=sorted(DATABASE_PPI))
    parser.add_argument("--precision", choices=get_args(Precision), default="fp32")
    parser.add_argument("--rounds", type=int, default=6, help="passes over the images")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/alternate-DATE")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        extractors = {
            role: MinutiaeExtractor.load(directory, precision=args.precision)
            for role, directory in zip(ROLES, (args.baseline, args.candidate), strict=True)
        }
    except ModelError as exc:
        parser.error(str(exc))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("benchmarks/results") / f"alternate-{stamp}"
    results: dict[str, Any] = {
        "date": stamp,
        "command": "python -m benchmarks.alternate "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "models": {
            role: {"dir": str(d), "version": extractors[role].version}
            for role, d in zip(ROLES, (args.baseline, args.candidate), strict=True)
        },
        "precision": args.precision,
        "databases": {},
    }
    lines = [
        f"# Alternate timing {stamp}",
        "",
        f"{args.precision}, one thread; ratio = median over images and rounds of candidate / "
        "baseline on the same image.",
        "",
        "| set | baseline ms | candidate ms | ratio | extractions each |",
        "|---|---|---|---|---|",
    ]
    for database in args.databases:
        images = load_raw_corpus(args.corpus, [database])
        row = summary(alternate(extractors, images, args.rounds))
        results["databases"][database] = row
        lines.append(
            f"| {database} | {row['baseline_ms']:.2f} | {row['candidate_ms']:.2f} | "
            f"{row['ratio']:.3f} | {row['extractions_each']} |"
        )
        print(lines[-1])
    write_report(out, results, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
