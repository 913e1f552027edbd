"""``python -m models.train --corpus ../shared/corpus --out models/``: train, export, evaluate.

With ``--holdout DB4_B`` the model never sees that database and the manifest reports its
scores on it; without, all four databases train the model that ships.

Labels: the corpus ISO templates by default; ``--labels leader`` teaches LEADER's minutiae from
the committed store ``labels/leader_fvc2002.npz`` instead, and ``--synthetic N`` mixes N
synthetic impressions with exact minutiae (rendered again from ``labels/synthetic_truth.npz``)
into every batch; together they verified worse on held-out databases (MODEL_CARD.md).
``--labels corpus-open`` teaches the corpus labels but leaves the cells of LEADER's sure
minutiae that no label is near out of the presence loss, so the network is not taught that
minutiae the labels missed are background. ``--consistency W`` also teaches each crop turned
by quarter turns and penalises the two views' disagreement; in its pilot it agreed better with
the labels but verified worse held out (MODEL_CARD.md). ``--teacher CHECKPOINT`` makes the last
refining cycles also learn a finished run's half-turn averaged heads (distillation), and
``--quant-aware-cycles N`` makes the last N train through the int8 model's rounding.
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
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import get_args  # noqa: E402

import torch  # noqa: E402

from edge.extraction import Background, MinutiaeExtractor  # noqa: E402
from models.train.data import DATABASE_PPI, RawImage, load_raw_corpus  # noqa: E402
from models.train.evaluate import ANGLE_DEG, DISTANCE_PX, score, with_decoding  # noqa: E402
from models.train.export import export_onnx, manifest, write_manifest  # noqa: E402
from models.train.loop import UnfinishedRunError, finished_run, train  # noqa: E402
from models.train.net import CELL, HalfTurnAverage, HalfTurnPair, MinutiaeNet  # noqa: E402
from models.train.preparation import prepare_file  # noqa: E402
from models.train.quantize import INT8_FILE, quantize_from_corpus  # noqa: E402
from models.train.recipe import (  # noqa: E402
    LABEL_SOURCES,
    add_recipe_arguments,
    device,
    prepare,
    run_checkpoints,
)
from models.train.synthetic import TRUTH_FILE  # noqa: E402
from models.train.verification import (  # noqa: E402
    EER_SLACK,
    NMS_RADII,
    THRESHOLDS,
    DecodingPoint,
    best_f1_near_lowest_eer,
    decoding_grid,
    grid_record,
    highest_threshold_within,
    lowest_eer,
)

MODEL_FILE = "minutiae.onnx"
TEST_TIME = {
    "plain": "the network once",
    "half-turn": "the network's heads on the image and on the image turned 180 degrees (mapped "
    "back: cells and offsets mirrored, directions reversed), averaged inside the graph",
    "half-turn-pair": "this network's heads on the image and a partner network's (the same "
    "recipe with other synthetic data, training.partner) on the image turned 180 degrees "
    "(mapped back), averaged inside the graph",
}
DECODING_RULES = {
    "eer": "lowest EER (MCC, all cross-finger impostor pairs) averaged over the training "
    "databases; NMS radius 8 px",
    "f1-near-eer": "highest minutiae F1 against the labels among the (threshold, NMS radius) "
    "pairs whose mean training EER is within {slack:.1f} points of the lowest",
    "eer-budget": "the highest threshold (NMS radius 8 px) whose mean training EER is within "
    "--eer-budget (the lowest EER when none is)",
}


def decoding_rule_text(rule: str, eer_slack: float, eer_budget: float | None) -> str:
    """The rule as the manifest records it, with the parameter that rule takes."""
    if rule == "f1-near-eer":
        return DECODING_RULES[rule].format(slack=100 * eer_slack)
    if rule == "eer-budget":
        return f"{DECODING_RULES[rule]} ({eer_budget} %)"
    return DECODING_RULES[rule]


DECODING = {
    "cell_size": 8,
    "presence_threshold": 0.5,
    "foreground_threshold": 0.5,
    "nms_radius": 8.0,
    "border_margin": 8.0,
}


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__)
    add_recipe_arguments(parser)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--holdout", choices=sorted(DATABASE_PPI), default=None)
    parser.add_argument("--labels", choices=sorted(LABEL_SOURCES), default="corpus")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument(
        "--background",
        choices=get_args(Background),
        default="flattened",
        help="what the extractor feeds the network (the manifest's input.background); "
        "independent of --train-background",
    )
    parser.add_argument(
        "--test-time",
        choices=sorted(TEST_TIME),
        default="plain",
        help="what the exported graph computes: the network once (plain), or its heads averaged "
        "with those of the image turned 180 degrees (half-turn; twice the inference time), or "
        "with a partner network's heads on the turned image (half-turn-pair; two passes)",
    )
    parser.add_argument(
        "--partner-synthetic",
        type=int,
        default=None,
        metavar="N",
        help="for --test-time half-turn-pair: the partner is the finished run of this same "
        "command with --synthetic N (train it first, with --no-export)",
    )
    parser.add_argument(
        "--decoding-rule",
        choices=sorted(DECODING_RULES),
        default="eer",
        help="how the decoding is chosen on the training databases: the presence threshold "
        "that verifies best (eer), or threshold and NMS radius together, agreeing best with "
        "the labels among those verifying within 0.2 EER points of the best (f1-near-eer)",
    )
    parser.add_argument(
        "--eer-budget",
        type=float,
        default=None,
        metavar="PERCENT",
        help="for --decoding-rule eer-budget: the mean training EER (%%) the decoding may spend; "
        "say, what the model this one replaces verifies at on the same databases",
    )
    parser.add_argument(
        "--eer-slack",
        type=float,
        default=None,
        metavar="POINTS",
        help="for --decoding-rule f1-near-eer: how many EER points above the lowest mean "
        f"training EER a decoding may verify (default {100 * EER_SLACK:.1f}); more trades "
        "verification for agreement with the labels",
    )
    parser.add_argument(
        "--no-export",
        action="store_true",
        help="stop once the checkpoint is trained (say, on a GPU box); the same command without "
        "it exports and tunes from the finished checkpoint",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser()
    args = parser.parse_args(argv)
    pair = args.test_time == "half-turn-pair"
    if pair != (args.partner_synthetic is not None):
        parser.error("--test-time half-turn-pair and --partner-synthetic go together")
    if pair and args.partner_synthetic == args.synthetic:
        parser.error("the partner must differ: --partner-synthetic equals --synthetic")
    if (args.decoding_rule == "eer-budget") != (args.eer_budget is not None):
        parser.error("--decoding-rule eer-budget and --eer-budget go together")
    if args.eer_slack is not None and args.decoding_rule != "f1-near-eer":
        parser.error("--eer-slack is for --decoding-rule f1-near-eer")
    if args.eer_slack is not None and args.eer_slack < 0:
        parser.error("--eer-slack must not be negative")
    eer_slack = EER_SLACK if args.eer_slack is None else args.eer_slack / 100
    torch.set_num_threads(1)  # the edge box and the shared build machine both have few cores
    # The partner is looked up first: a missing one should not cost a training run's wait.
    partner_net: MinutiaeNet | None = None
    partner: dict[str, object] = {}
    if pair:
        partner_args = argparse.Namespace(**{**vars(args), "synthetic": args.partner_synthetic})
        partner_config, partner_checkpoint, _ = run_checkpoints(
            partner_args, args.holdout, args.labels
        )
        try:
            _, partner_net = finished_run(partner_checkpoint, partner_config)
        except UnfinishedRunError as exc:
            parser.error(f"partner run: {exc}")
        partner = {"config": asdict(partner_config), "checkpoint": partner_checkpoint.name}
    code_commit = _code_commit()  # before this run writes models/ (tracked files) itself

    run = prepare(args, args.holdout, args.labels)
    config, raw_train, databases = run.config, run.raw_train, run.config.databases
    raw_held = load_raw_corpus(args.corpus, [args.holdout]) if args.holdout else []
    model = train(run.images, config, run.checkpoint, device(args.device), run.foundation)
    if args.no_export:
        return

    exported: torch.nn.Module = model
    if args.test_time == "half-turn":
        exported = HalfTurnAverage(model)
    elif partner_net is not None:
        exported = HalfTurnPair(model, partner_net)
    export_onnx(exported, args.out / MODEL_FILE)
    sha256 = prepare_file(args.out / MODEL_FILE, args.background, CELL)
    parameters = sum(p.numel() for p in exported.parameters())
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
        "test_time": TEST_TIME[args.test_time],
        **({"partner": partner} if partner else {}),
        "command": "python -m models.train " + shlex.join(sys.argv[1:] if argv is None else argv),
        "code_commit": code_commit,
    }
    saved = torch.load(run.checkpoint, weights_only=False, map_location="cpu")
    trained_with = saved.get("trained_with")
    if trained_with:  # a sweep trained the weights; this command exported and tuned them
        training["trained_with"] = trained_with
    name = "kiosk-minutiae-cnn"
    write_manifest(
        args.out / "manifest.json",
        manifest(name, args.version, MODEL_FILE, sha256, DECODING, training, {}, args.background),
    )
    extractor = MinutiaeExtractor.load(args.out)
    # The operating point comes from how templates verify, not only from agreement with the
    # labels: MCC gains more from a few extra true minutiae than it loses to spurious ones, so
    # the EER-best threshold sits below the F1-best one.
    chosen, grid = choose_decoding(
        extractor, raw_train, args.decoding_rule, args.eer_budget, eer_slack
    )
    settings = {"presence_threshold": chosen.presence_threshold, "nms_radius": chosen.nms_radius}
    tuned = with_decoding(extractor, **settings)
    metrics: dict[str, object] = {
        "tolerance": {"distance_px": DISTANCE_PX, "angle_deg": ANGLE_DEG, "pairing": "one-to-one"},
        "decoding_chosen_on": list(databases),
        "decoding_choice": {
            "rule": decoding_rule_text(args.decoding_rule, eer_slack, args.eer_budget),
            "grid": grid_record(grid),
        },
        "training_databases": {k: v.as_dict() for k, v in score(tuned, raw_train).items()},
    }
    if raw_held:
        metrics["held_out"] = {k: v.as_dict() for k, v in score(tuned, raw_held).items()}
    decoding = {**DECODING, **settings}
    write_manifest(
        args.out / "manifest.json",
        manifest(
            name, args.version, MODEL_FILE, sha256, decoding, training, metrics, args.background
        ),
    )
    print(
        f"threshold {chosen.presence_threshold}, NMS {chosen.nms_radius:g} px, "
        f"training F1 {chosen.agreement.f1:.3f}"
    )
    for key, value in metrics.items():
        print(key, value)
    # The int8 model goes with this fp32 one, calibrated only on the databases it trained on.
    int8_sha256 = quantize_from_corpus(args.out, args.corpus, databases)
    print(f"int8 model {INT8_FILE} sha256 {int8_sha256}")


def choose_decoding(
    extractor: MinutiaeExtractor,
    images: list[RawImage],
    rule: str,
    eer_budget_percent: float | None = None,
    eer_slack: float = EER_SLACK,
) -> tuple[DecodingPoint, list[DecodingPoint]]:
    """The decoding ``rule`` picks on ``images``, and the grid it picked from."""
    if rule == "f1-near-eer":
        grid = decoding_grid(extractor, images, THRESHOLDS, NMS_RADII)
        return best_f1_near_lowest_eer(grid, eer_slack), grid
    grid = decoding_grid(extractor, images, THRESHOLDS, [DECODING["nms_radius"]])
    if rule == "eer-budget":
        assert eer_budget_percent is not None
        return highest_threshold_within(grid, eer_budget_percent / 100), grid
    return lowest_eer(grid), grid


def _code_commit() -> str:
    """The git commit of this training code (``+modified`` when the tree differs from it).

    The command alone does not pin the model: the same options on other code draw other batches.
    """
    here = Path(__file__).parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        clean = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=here).returncode == 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head if clean else head + "+modified"


if __name__ == "__main__":
    main()
