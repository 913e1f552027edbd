"""Training-step time with crops cut from windows against crops cut from whole images.

    python -m benchmarks.training_steps --corpus ../shared/corpus [--holdout DB3_B]
        [--batch-size 256] [--rounds 8] [--out DIR]

Needs the ``train`` extra. One thread, as the CPU recipe trains. Each round makes a batch and
takes one optimiser step both ways, the order swapped each round, on one fold's training
images; the figures are the medians over rounds of the batch alone and of the whole step, and
the median per-round ratio of windowed to whole-image time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from benchmarks.report import write_report
from models.train.augment import ImageBank, cell_targets, sample_crops
from models.train.loop import TrainConfig, sampling_weights, step_losses
from models.train.net import MinutiaeNet
from models.train.recipe import LABEL_SOURCES, add_recipe_arguments, prepare

MODES = {"whole": False, "windowed": True}


def one_step(
    bank: ImageBank,
    config: TrainConfig,
    model: MinutiaeNet,
    optimiser: torch.optim.Optimizer,
    generator: torch.Generator,
    window: bool,
) -> tuple[float, float]:
    """Seconds to make one batch, and for the whole step."""
    start = time.perf_counter()
    index = torch.multinomial(
        bank.weights, config.batch_size, replacement=True, generator=generator
    )
    crops = sample_crops(bank, index, config.crop, generator, config.augmentation, window)
    batch = cell_targets(crops)
    made = time.perf_counter()
    _, total = step_losses(model, batch, config, 0)
    optimiser.zero_grad(set_to_none=True)
    torch.autograd.backward(total)
    optimiser.step()
    return made - start, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.training_steps", description=__doc__
    )
    add_recipe_arguments(parser)
    parser.set_defaults(batch_size=256, width=80, steps=9500)  # the fourth candidate's recipe
    parser.add_argument("--labels", choices=sorted(LABEL_SOURCES), default="corpus")
    parser.add_argument("--holdout", default="DB3_B", help="the fold whose training images to use")
    parser.add_argument("--rounds", type=int, default=8, help="steps each way")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/training-steps-DATE")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    torch.set_num_threads(1)
    run = prepare(args, args.holdout, args.labels)
    config = run.config
    bank = ImageBank.build(run.images, sampling_weights(run.images, config.synthetic_fraction))
    state = {}
    for mode in MODES:
        model = MinutiaeNet(config.width).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        state[mode] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3), torch.Generator())
    for mode, (model, optimiser, generator) in state.items():  # first calls allocate
        generator.manual_seed(config.seed)
        one_step(bank, config, model, optimiser, generator, MODES[mode])
    times: dict[str, dict[str, list[float]]] = {m: {"batch": [], "step": []} for m in MODES}
    for n in range(args.rounds):
        order = list(MODES) if n % 2 == 0 else list(MODES)[::-1]
        for mode in order:
            model, optimiser, generator = state[mode]
            batch_s, step_s = one_step(bank, config, model, optimiser, generator, MODES[mode])
            times[mode]["batch"].append(batch_s)
            times[mode]["step"].append(step_s)
    rows = {
        part: {
            "whole_s": round(statistics.median(times["whole"][part]), 4),
            "windowed_s": round(statistics.median(times["windowed"][part]), 4),
            "ratio": round(
                statistics.median(
                    w / b
                    for w, b in zip(times["windowed"][part], times["whole"][part], strict=True)
                ),
                4,
            ),
        }
        for part in ("batch", "step")
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("benchmarks/results") / f"training-steps-{stamp}"
    results: dict[str, Any] = {
        "date": stamp,
        "command": "python -m benchmarks.training_steps "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "holdout": args.holdout,
        "batch_size": config.batch_size,
        "crop": config.crop,
        "images": len(run.images),
        "rounds": args.rounds,
        "seconds": rows,
    }
    lines = [
        f"# Training steps {stamp}",
        "",
        f"One thread, batch {config.batch_size} of {config.crop} px crops, "
        f"{args.holdout} held out; "
        "ratio = median over rounds of windowed / whole-image time.",
        "",
        "| part | whole-image s | windowed s | ratio |",
        "|---|---|---|---|",
    ]
    for part, row in rows.items():
        lines.append(
            f"| {part} | {row['whole_s']:.3f} | {row['windowed_s']:.3f} | {row['ratio']:.3f} |"
        )
        print(lines[-1])
    write_report(out, results, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
