"""``python -m models.train.sweep --run DB3_B:corpus --run all:leader ...``: train runs together.

Every run shares the recipe options (steps, batch, width, augmentation...) and differs in the
database it holds out (``all``: none) and its label source. The runs train as one grouped
network (:mod:`models.train.grouped`), which keeps a GPU busy where one small run cannot, and
each writes the checkpoint ``python -m models.train`` with the same options would. That command,
run afterwards (on any machine), finds the finished checkpoint and only exports and tunes.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from models.train.data import DATABASE_PPI
from models.train.grouped import train_together
from models.train.recipe import LABEL_SOURCES, add_recipe_arguments, device, prepare

ALL = "all"


def parse_run(text: str) -> tuple[str | None, str]:
    """``DB3_B:corpus`` -> ("DB3_B", "corpus"); ``all:leader`` -> (None, "leader")."""
    holdout, _, labels = text.partition(":")
    labels = labels or "corpus"
    if holdout != ALL and holdout not in DATABASE_PPI:
        choices = ", ".join([ALL, *sorted(DATABASE_PPI)])
        raise argparse.ArgumentTypeError(f"held-out database {holdout!r} is not one of {choices}")
    if labels not in LABEL_SOURCES:
        choices = ", ".join(sorted(LABEL_SOURCES))
        raise argparse.ArgumentTypeError(f"label source {labels!r} is not one of {choices}")
    return (None if holdout == ALL else holdout), labels


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models.train.sweep", description=__doc__)
    add_recipe_arguments(parser)
    parser.add_argument(
        "--run",
        type=parse_run,
        action="append",
        required=True,
        metavar="HOLDOUT:LABELS",
        help="a run: the database it holds out (or 'all') and its labels (default corpus)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser()
    args = parser.parse_args(argv)
    if len(set(args.run)) != len(args.run):
        parser.error("the same run is named twice")
    torch.set_num_threads(1)
    runs = [prepare(args, holdout, labels) for holdout, labels in args.run]
    command = "python -m models.train.sweep " + shlex.join(sys.argv[1:] if argv is None else argv)
    train_together(
        [(r.images, r.config, r.checkpoint) for r in runs],
        device(args.device),
        command,
        foundations=[r.foundation for r in runs],
    )
    print("export and tune each run with:")
    for command in export_commands(args):
        print("  " + command)


def export_commands(args: argparse.Namespace) -> list[str]:
    """For each run, the ``python -m models.train`` command that finds its checkpoint."""
    shared = [
        f"--{name.replace('_', '-')}={getattr(args, name)}"
        for name in (
            "steps",
            "refine_steps",
            "refine_cycles",
            "batch_size",
            "crop",
            "learning_rate",
            "width",
            "seed",
            "synthetic",
            "consistency",
            "quant_aware_cycles",
        )
    ]
    shared += [f"--augmentation={args.augmentation}", f"--train-background={args.train_background}"]
    if args.synthetic:
        shared += [f"--synthetic-fraction={args.synthetic_fraction}"]
    if args.teacher:  # "{run}" stays in: each command names its own run's teacher with it
        shared += [f"--teacher={args.teacher}", f"--distill={args.distill}"]
        shared += [f"--distill-cycles={args.distill_cycles}"]
    commands = []
    for holdout, labels in args.run:
        where = f"runs/{holdout or ALL}-{labels}"
        options = ["--corpus", str(args.corpus), "--out", where, "--labels", labels]
        options += ["--holdout", holdout] if holdout else []
        options += ["--checkpoints", str(args.checkpoints)]
        commands.append("python -m models.train " + shlex.join(options + shared))
    return commands


if __name__ == "__main__":
    main()
