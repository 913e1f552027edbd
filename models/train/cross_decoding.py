"""Cross-validated decoding: each model's threshold and NMS radius chosen on prints it never saw.

A network is surer of its minutiae on the databases it trained on than on a new sensor, so a
threshold chosen there sits too low for new prints. Here every leave-one-database-out run is
scored over the decoding grid on its own held-out database. A held-out run is then decoded by
the setting the f1-near-eer rule picks from the *other* runs' held-out scores (its own held-out
database never enters its choice), and the all-database model by the setting picked from all
of them. Only the manifests' ``decoding`` and the figures that depend on it change.

    python -m models.train.cross_decoding --corpus ../shared/corpus \\
        --run DB1_B=runs/x-DB1_B --run DB2_B=runs/x-DB2_B --run DB3_B=runs/x-DB3_B \\
        --run DB4_B=runs/x-DB4_B --all models/ --version 1.9.0
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.extraction import MinutiaeExtractor
from models.train.data import DATABASE_PPI, RawImage, load_raw_corpus
from models.train.evaluate import Score, score, with_decoding
from models.train.manifest_file import write_manifest
from models.train.verification import (
    EER_SLACK,
    NMS_RADII,
    THRESHOLDS,
    DecodingPoint,
    best_f1_near_lowest_eer,
    decoding_grid,
    grid_record,
)

Grid = list[DecodingPoint]


def pooled(grids: Sequence[Grid]) -> Grid:
    """One grid from several runs' grids over the same settings: EER averaged, agreement pooled."""
    if not grids:
        raise ValueError("no grids to pool")
    settings = [(p.presence_threshold, p.nms_radius) for p in grids[0]]
    for grid in grids[1:]:
        if [(p.presence_threshold, p.nms_radius) for p in grid] != settings:
            raise ValueError("grids cover different decoding settings")
    return [
        DecodingPoint(
            threshold,
            radius,
            float(np.mean([grid[i].mean_eer for grid in grids])),
            sum((grid[i].agreement for grid in grids), Score(0, 0, 0)),
        )
        for i, (threshold, radius) in enumerate(settings)
    ]


def choices(
    held_out_grids: Mapping[str, Grid], eer_slack: float = EER_SLACK
) -> dict[str | None, tuple[DecodingPoint, Grid, list[str]]]:
    """For each held-out database's run, and for the all-database model (key ``None``): the
    chosen setting, the pooled grid it came from and the databases that grid was scored on."""
    result: dict[str | None, tuple[DecodingPoint, Grid, list[str]]] = {}
    for database in [*held_out_grids, None]:
        others = sorted(d for d in held_out_grids if d != database)
        grid = pooled([held_out_grids[d] for d in others])
        result[database] = (best_f1_near_lowest_eer(grid, eer_slack), grid, others)
    return result


def rule_text(eer_slack: float) -> str:
    return (
        "highest minutiae F1 against the labels among the (threshold, NMS radius) pairs whose "
        f"mean EER is within {100 * eer_slack:g} points of the lowest, scored by the "
        "leave-one-database-out runs on their held-out databases, this model's own excepted "
        "(cross-validated decoding)"
    )


def _training(manifest: dict[str, Any]) -> dict[str, Any]:
    training = manifest.get("training")
    return training if isinstance(training, dict) else {}


def _manifest(model_dir: Path) -> dict[str, Any]:
    content: dict[str, Any] = json.loads((model_dir / "manifest.json").read_text())
    return content


def held_out_database(manifest: dict[str, Any]) -> str | None:
    held = _training(manifest).get("held_out")
    return str(held) if held else None


def _databases(manifest: dict[str, Any]) -> list[str]:
    return [str(d) for d in _training(manifest).get("databases") or []]


def rewrite(
    model_dir: Path,
    chosen: DecodingPoint,
    grid: Grid,
    chosen_on: list[str],
    eer_slack: float,
    command: str,
    images: Sequence[RawImage],
    version: str | None = None,
) -> None:
    """Set ``model_dir``'s manifest decoding to ``chosen`` and re-measure what depends on it."""
    path = model_dir / "manifest.json"
    content = _manifest(model_dir)
    settings = {"presence_threshold": chosen.presence_threshold, "nms_radius": chosen.nms_radius}
    content["decoding"] = {**content["decoding"], **settings}
    if version is not None:
        content["version"] = version
    tuned = with_decoding(MinutiaeExtractor.load(model_dir), **settings)
    metrics = content.setdefault("metrics", {})
    metrics["decoding_chosen_on"] = [f"{d} (the {d}-held-out run)" for d in chosen_on]
    metrics["decoding_choice"] = {
        "rule": rule_text(eer_slack),
        "command": command,
        "grid": grid_record(grid),
    }
    training = [i for i in images if i.database in _databases(content)]
    metrics["training_databases"] = {k: v.as_dict() for k, v in score(tuned, training).items()}
    held_out = held_out_database(content)
    if held_out is not None:
        held = [i for i in images if i.database == held_out]
        metrics["held_out"] = {k: v.as_dict() for k, v in score(tuned, held).items()}
    write_manifest(path, content)


def _run(text: str) -> tuple[str, Path]:
    database, sep, folder = text.partition("=")
    if not sep or database not in DATABASE_PPI or not folder:
        raise argparse.ArgumentTypeError(f"expected DBn_B=FOLDER, got {text!r}")
    return database, Path(folder)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.train.cross_decoding")
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument(
        "--run",
        type=_run,
        action="append",
        required=True,
        metavar="DBn_B=FOLDER",
        help="a leave-one-database-out run and the database it held out (give all of them)",
    )
    parser.add_argument("--all", type=Path, help="the all-database model to decode likewise")
    parser.add_argument("--version", help="new version for the all-database model's manifest")
    parser.add_argument("--eer-slack", type=float, default=100 * EER_SLACK, help="EER points")
    parser.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS)
    parser.add_argument("--radii", type=float, nargs="+", default=NMS_RADII, help="NMS, px")
    args = parser.parse_args(argv)
    runs = dict(args.run)
    if len(runs) < 2 or len(runs) != len(args.run):
        parser.error("give at least two runs, one per held-out database")
    manifests = {folder: _manifest(folder) for folder in [*runs.values(), args.all] if folder}
    for database, folder in runs.items():
        if held_out_database(manifests[folder]) != database:
            parser.error(f"{folder} did not hold out {database}")
    if args.all is not None and held_out_database(manifests[args.all]) is not None:
        parser.error(f"{args.all} held out a database; --all is the model trained on all")
    if args.version is not None and args.all is None:
        parser.error("--version is for the --all model")
    eer_slack = args.eer_slack / 100
    given = list(argv) if argv is not None else sys.argv[1:]
    command = shlex.join(["python", "-m", "models.train.cross_decoding", *given])
    trained_on = {d for manifest in manifests.values() for d in _databases(manifest)}
    images = load_raw_corpus(args.corpus, sorted(trained_on | set(runs)))
    grids = {}
    for database, folder in runs.items():
        extractor = MinutiaeExtractor.load(folder)
        held = [i for i in images if i.database == database]
        grids[database] = decoding_grid(extractor, held, args.thresholds, args.radii)
        print(f"{database}: {folder} scored on its held-out database", flush=True)
    for database, (chosen, grid, others) in choices(grids, eer_slack).items():
        target = runs[database] if database is not None else args.all
        if target is None:
            continue
        version = args.version if database is None else None
        rewrite(target, chosen, grid, others, eer_slack, command, images, version)
        print(
            f"{target}: threshold {chosen.presence_threshold}, NMS {chosen.nms_radius:g} px "
            f"(chosen on {', '.join(others)}: mean EER {100 * chosen.mean_eer:.3f} %, "
            f"F1 {chosen.agreement.f1:.4f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
