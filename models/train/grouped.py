"""Several runs trained as one grouped network: one batch stream, one optimiser step per step.

A small network leaves a GPU idle between its many tiny kernels, and separate processes only
take turns on it. Stacking the runs' networks as convolution groups (:class:`MinutiaeNet` with
``models`` > 1) does every run's step in the same kernels. Nothing couples the runs: each
network sees only its own input channel and its own batch, each loss is averaged per network,
and AdamW updates element by element, so a run trains as it would alone, on other random draws.
Each run's checkpoint is written in :func:`models.train.loop.train`'s format under its own name.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from models.train.augment import ImageBank, cell_targets, sample_crops
from models.train.data import LabelledImage
from models.train.fake_quant import SimulatedInt8
from models.train.loop import (
    CHECKPOINT_EVERY,
    TrainConfig,
    carried_history,
    learning_rate_at,
    load_teacher,
    resumable_state,
    resume_generator,
    sampling_weights,
    save_checkpoint,
    step_losses,
)
from models.train.net import MinutiaeNet, join, split

# The fields runs of one sweep may differ in; everything else shapes the shared batch or net.
PER_RUN = frozenset({"databases", "labels", "synthetic_images", "synthetic_fraction", "teacher"})


def _split_optimiser(state: dict[str, Any], models: int) -> list[dict[str, Any]]:
    per_param = {
        index: split({k: v.cpu() for k, v in values.items()}, models)
        for index, values in state["state"].items()
    }
    groups = state["param_groups"]
    return [
        {"state": {i: parts[k] for i, parts in per_param.items()}, "param_groups": groups}
        for k in range(models)
    ]


def _join_optimiser(states: list[dict[str, Any]]) -> dict[str, Any]:
    indices = states[0]["state"].keys()
    return {
        "state": {i: join([s["state"][i] for s in states]) for i in indices},
        "param_groups": states[0]["param_groups"],
    }


def _shared(configs: list[TrainConfig]) -> dict[str, Any]:
    shared = [{k: v for k, v in asdict(c).items() if k not in PER_RUN} for c in configs]
    for other in shared[1:]:
        if other != shared[0]:
            differing = sorted(k for k in other if other[k] != shared[0][k])
            raise ValueError(f"runs trained together must agree on {differing}")
    return shared[0]


def train_together(
    runs: list[tuple[list[LabelledImage], TrainConfig, Path]],
    device: torch.device | str,
    trained_with: str = "models.train.grouped",
    foundations: list[Path | None] | None = None,
) -> list[MinutiaeNet]:
    """Train every (images, config, checkpoint) run at once; resumes when all stopped together.

    ``foundations`` are, for refined runs, the finished checkpoints of the runs they refine.

    ``trained_with`` (the sweep's command, say) goes into every checkpoint, and from there into
    the manifest of a model exported from it.
    """
    device = torch.device(device)
    configs = [config for _, config, _ in runs]
    shared = _shared(configs)
    models = len(runs)
    # One bank of every distinct (image, labels) pair; each run draws only from its own.
    entries: dict[tuple[str, str, bytes], int] = {}
    bank_images: list[LabelledImage] = []
    members: list[list[int]] = []
    for images, _, _ in runs:
        indices = []
        for image in images:
            key = (image.database, image.name, image.minutiae.tobytes())
            if key not in entries:
                entries[key] = len(bank_images)
                bank_images.append(image)
            indices.append(entries[key])
        members.append(indices)
    bank = ImageBank.build(bank_images, None, device)
    weights = np.zeros((models, len(bank_images)))
    for k, ((images, config, _), indices) in enumerate(zip(runs, members, strict=True)):
        weights[k, indices] = sampling_weights(images, config.synthetic_fraction)
    draw = torch.from_numpy(weights).to(device)

    torch.manual_seed(shared["seed"])
    single = MinutiaeNet(shared["width"]).state_dict()  # every run starts as it would alone
    model = MinutiaeNet(shared["width"], models).to(device)
    model.load_state_dict(join([single] * models))
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    # runs trained together checkpoint into one folder, where their teachers are looked up
    teacher = load_teacher(configs, runs[0][2].parent)
    if teacher is not None:
        teacher.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    simulated = SimulatedInt8(model) if shared["quant_aware_cycles"] else None
    optimiser = torch.optim.AdamW(model.parameters(), lr=shared["learning_rate"], weight_decay=1e-4)
    generator = torch.Generator(device=device)
    generator.manual_seed(shared["seed"])
    kind = generator.device.type
    described = f"{trained_with} ({models} runs as one grouped network, {kind})"
    start, histories = _resume(
        runs, foundations or [None] * models, model, optimiser, generator, described
    )

    steps = configs[0].total_steps
    batch_size, crop = shared["batch_size"], shared["crop"]
    augmentation = shared["augmentation"]
    model.train()
    progress = tqdm(range(start, steps), initial=start, total=steps, mininterval=30)
    for step in progress:
        for group in optimiser.param_groups:
            group["lr"] = learning_rate_at(configs[0], step)
        index = torch.multinomial(draw, batch_size, replacement=True, generator=generator)
        batch = cell_targets(sample_crops(bank, index.flatten(), crop, generator, augmentation))
        stacked = batch.images.reshape(models, batch_size, crop, crop).transpose(0, 1)
        grouped = replace(batch, images=stacked)
        parts, total = step_losses(model, grouped, configs[0], step, models, teacher, simulated)
        optimiser.zero_grad(set_to_none=True)
        torch.autograd.backward(total)
        optimiser.step()
        if (step + 1) % CHECKPOINT_EVERY == 0 or step + 1 == steps:
            _save(runs, model, optimiser, generator, step + 1, histories)
            summary = {k: float(v.detach().mean()) for k, v in parts.items()}
            tqdm.write(f"step {step + 1}: " + " ".join(f"{k} {v:.4f}" for k, v in summary.items()))
    model.eval()
    nets = []
    for state in split(model.cpu().state_dict(), models):
        net = MinutiaeNet(shared["width"])
        net.load_state_dict(state)
        nets.append(net.eval())
    return nets


def _save(
    runs: list[tuple[list[LabelledImage], TrainConfig, Path]],
    model: MinutiaeNet,
    optimiser: torch.optim.Optimizer,
    generator: torch.Generator,
    step: int,
    histories: list[str],
) -> None:
    states = split({k: v.cpu() for k, v in model.state_dict().items()}, len(runs))
    optimisers = _split_optimiser(optimiser.state_dict(), len(runs))
    for (_, config, checkpoint), state, optimiser_state, history in zip(
        runs, states, optimisers, histories, strict=True
    ):
        save_checkpoint(
            checkpoint, config, state, optimiser_state, generator, step, trained_with=history
        )


def _resume(
    runs: list[tuple[list[LabelledImage], TrainConfig, Path]],
    foundations: list[Path | None],
    model: MinutiaeNet,
    optimiser: torch.optim.Optimizer,
    generator: torch.Generator,
    described: str,
) -> tuple[int, list[str]]:
    """The step to go on from (every run's saved state, see resumable_state, at the same step)
    and each run's ``trained_with`` (see carried_history)."""
    afresh = 0, [described] * len(runs)
    states = []
    for (_, config, checkpoint), foundation in zip(runs, foundations, strict=True):
        state = resumable_state(config, checkpoint, foundation)
        if state is None:
            return afresh
        states.append(state)
    if len({s["step"] for s in states}) != 1:
        tqdm.write("the runs' checkpoints stopped at different steps; starting again")
        return afresh
    model.load_state_dict(join([s["model"] for s in states]))
    optimiser.load_state_dict(_join_optimiser([s["optimiser"] for s in states]))
    resume_generator(generator, states[0], runs[0][1].seed)
    step: int = states[0]["step"]
    histories = [
        carried_history(config, state, described) or described
        for (_, config, _), state in zip(runs, states, strict=True)
    ]
    return step, histories
