"""The training loop: seeded batches, a warm-up + cosine schedule (optionally followed by a
shorter refining cycle), resumable checkpoints."""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from tqdm import tqdm

from edge.extraction import Background
from models.train.augment import Augmentation, Batch, ImageBank, make_batch
from models.train.data import SYNTHETIC, LabelledImage
from models.train.fake_quant import SimulatedInt8
from models.train.net import HalfTurnTeacher, MinutiaeNet, join, quarter_turns_back

PRESENCE_POS_WEIGHT = 4.0  # about 2% of cells hold a minutia
WARMUP_STEPS = 200
# The refining cycle restarts the schedule at this share of the peak rate, after a short warm-up
# (the optimiser's moments carry over, so it needs less than a fresh start).
REFINE_PEAK = 0.3
REFINE_WARMUP_STEPS = 100
CHECKPOINT_EVERY = 250
TRAIN_BACKGROUNDS: tuple[Background, ...] = get_args(Background)


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int
    crop: int
    learning_rate: float
    seed: int
    width: int
    databases: tuple[str, ...]
    labels: str  # where the real images' minutiae come from: "corpus" or "leader"
    synthetic_images: int  # synthetic impressions mixed in (0: none)
    synthetic_fraction: float  # share of each batch drawn from them
    augmentation: Augmentation  # "basic": pose, contrast, noise; "strong": other sensors' looks
    # What the training images look like: as captured, or with the background divided out
    # (edge.preprocess.flatten_background) before augmentation.
    background: Background = "as_captured"
    # Steps of a shorter cosine cycle after ``steps``, run ``refine_cycles`` times. Every step
    # is the same as in the run with one cycle fewer, so a refined run starts from that run's
    # finished checkpoint.
    refine_steps: int = 0
    refine_cycles: int = 1
    # Weight of the quarter-turn consistency loss (0: off). Each step then also runs the network
    # on the batch turned by 1-3 quarter turns, teaches both views the labels, and penalises
    # where the turned view, mapped back, disagrees with the plain one (twice the arithmetic).
    consistency: float = 0.0
    # A finished run's checkpoint (file name, beside this run's) whose half-turn averaged heads
    # the last ``distill_cycles`` refining cycles also learn, with weight ``distill`` ("": none).
    # The teacher must not have trained on a database this run holds out (nothing may leak in).
    teacher: str = ""
    distill: float = 0.0
    distill_cycles: int = 0
    # The last ``quant_aware_cycles`` refining cycles train through the int8 model's rounding
    # (models.train.fake_quant), so that its minutiae survive quantisation.
    quant_aware_cycles: int = 0

    def __post_init__(self) -> None:
        taught = (bool(self.teacher), self.distill > 0, self.distill_cycles > 0)
        if len(set(taught)) != 1:
            raise ValueError("a teacher needs a positive distill weight and distill cycles")
        cycles = self.refine_cycles if self.refine_steps else 0
        if self.distill_cycles > cycles:
            raise ValueError(
                f"{self.distill_cycles} distilled cycles, but the run has {cycles} refining cycles"
            )
        if not 0 <= self.quant_aware_cycles <= cycles:
            raise ValueError(
                f"{self.quant_aware_cycles} quantisation-aware cycles, but the run has {cycles} "
                "refining cycles"
            )

    @property
    def total_steps(self) -> int:
        return self.steps + self.refine_steps * self.refine_cycles

    @property
    def previous(self) -> TrainConfig:
        """The run this one goes on from: one refining cycle fewer (itself when it has none).

        Distillation and quantisation-aware training are in the last cycles, so the run before
        has one such cycle fewer.
        """
        cycles: dict[str, Any]
        if self.refine_steps and self.refine_cycles > 1:
            cycles = {"refine_cycles": self.refine_cycles - 1}
            distilled = max(0, self.distill_cycles - 1)
            quant_aware = max(0, self.quant_aware_cycles - 1)
        else:
            cycles = {"refine_steps": 0, "refine_cycles": 1}
            distilled = quant_aware = 0
        untaught: dict[str, Any] = {} if distilled else {"teacher": "", "distill": 0.0}
        return replace(
            self, **cycles, **untaught, distill_cycles=distilled, quant_aware_cycles=quant_aware
        )

    def distilling_at(self, step: int) -> bool:
        """Whether ``step`` is in one of the refining cycles the teacher teaches."""
        untaught = self.refine_cycles - self.distill_cycles
        return bool(self.distill_cycles) and step >= self.steps + self.refine_steps * untaught

    def quant_aware_at(self, step: int) -> bool:
        """Whether ``step`` is in one of the quantisation-aware refining cycles."""
        plain = self.refine_cycles - self.quant_aware_cycles
        return bool(self.quant_aware_cycles) and step >= self.steps + self.refine_steps * plain


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's stored config, fields added since it was written at their defaults (which
    is what it was trained with)."""
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    return {**defaults, **saved}


def written_by(config: TrainConfig, saved: dict[str, Any]) -> bool:
    """Whether a checkpoint's stored config is ``config``."""
    return _with_defaults(saved) == asdict(config)


def save_checkpoint(
    path: Path,
    config: TrainConfig,
    model: dict[str, torch.Tensor],
    optimiser: dict[str, Any],
    generator: torch.Generator,
    step: int,
    trained_with: str | None = None,
) -> None:
    """Write a run's checkpoint whole or not at all (a temporary file, then a rename)."""
    state = {
        "config": asdict(config),
        "model": model,
        "optimiser": optimiser,
        "generator": generator.get_state(),
        "generator_device": generator.device.type,
        "step": step,
    }
    if trained_with is not None:
        state["trained_with"] = trained_with
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    torch.save(state, partial)
    partial.replace(path)


def resumable_state(
    config: TrainConfig, checkpoint: Path, foundation: Path | None = None
) -> dict[str, Any] | None:
    """The saved state a run goes on from, or None to start afresh.

    Its own checkpoint when ``config`` wrote it; otherwise, for a refined run, ``foundation``
    when the run it goes on from (:attr:`TrainConfig.previous`) wrote it and finished there.
    """
    if checkpoint.exists():
        state: dict[str, Any] = torch.load(checkpoint, weights_only=False, map_location="cpu")
        if written_by(config, state["config"]):
            return state
        tqdm.write(f"ignoring {checkpoint}: written by a different configuration")
    if config.refine_steps and foundation is not None and foundation.exists():
        state = torch.load(foundation, weights_only=False, map_location="cpu")
        previous = config.previous
        if written_by(previous, state["config"]) and state["step"] == previous.total_steps:
            tqdm.write(f"refining {foundation}")
            return state
        tqdm.write(f"ignoring {foundation}: not the finished run this one refines")
    return None


SINGLE_RUN = "a single run (python -m models.train)"
_STEPS = "steps "


def carried_history(
    config: TrainConfig, state: dict[str, Any] | None, here: str | None
) -> str | None:
    """What trained a run's weights (``trained_with`` in its checkpoints, then its manifest).

    ``here`` is what trains it now (None: a single run, which its manifest's command says). A
    run keeps the history of the checkpoint it goes on from; a refined run starting from the
    run before it says which steps each trainer made.
    """
    if state is None:
        return here
    before: str | None = state.get("trained_with")
    if written_by(config, state["config"]):  # its own checkpoint
        return before or here
    done = config.previous.total_steps
    earlier = before or SINGLE_RUN
    if not earlier.startswith(_STEPS):  # not yet split by trainer
        earlier = f"{_STEPS}1-{done}: {earlier}"
    return f"{earlier}; {_STEPS}{done + 1}-{config.total_steps}: {here or SINGLE_RUN}"


def resume_generator(generator: torch.Generator, saved: dict[str, Any], seed: int) -> None:
    """Carry a checkpoint's random stream over, or start a fresh one where it cannot be."""
    if saved.get("generator_device") == generator.device.type:
        generator.set_state(saved["generator"].cpu())
    else:  # another device's stream cannot be carried over
        generator.manual_seed(seed + saved["step"])


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over ``mask`` per network (dim 0), 0 where it is empty; no host sync."""
    weight = mask.to(values.dtype).flatten(1)
    total = (values.flatten(1) * weight).sum(dim=1)
    return total / weight.sum(dim=1).clamp_min(1.0)


def _per_network(heads: torch.Tensor, models: int) -> torch.Tensor:
    """N x 7m x G x G grouped heads as mN x 7 x G x G: network 0's N rows, then network 1's..."""
    n, _, *cells = heads.shape
    return heads.reshape(n, models, -1, *cells).transpose(0, 1).flatten(0, 1)


def losses(heads: torch.Tensor, batch: Batch, models: int = 1) -> dict[str, torch.Tensor]:
    """Each loss per network, shape ``models``.

    ``heads`` is N x 7m x G x G from a grouped net (:class:`MinutiaeNet` with ``models``=m)
    and the batch holds network 0's N crops, then network 1's, and so on.
    """
    n = heads.shape[0]
    heads = _per_network(heads, models)

    def split(values: torch.Tensor) -> torch.Tensor:
        return values.reshape(models, n, *values.shape[1:])

    everywhere = torch.ones_like(batch.presence, dtype=torch.bool)
    positive = (batch.presence > 0)[:, None].expand(-1, 2, -1, -1)
    taught = batch.open == 0
    presence = F.binary_cross_entropy_with_logits(
        heads[:, 0],
        batch.presence,
        pos_weight=torch.tensor(PRESENCE_POS_WEIGHT, device=heads.device),
        reduction="none",
    )
    foreground = F.binary_cross_entropy_with_logits(heads[:, 6], batch.foreground, reduction="none")
    offset_error = (torch.sigmoid(heads[:, 1:3]) - batch.offsets).abs()
    direction_error = (heads[:, 3:5] - batch.direction) ** 2
    type_loss = F.binary_cross_entropy_with_logits(
        heads[:, 5], batch.bifurcation.clamp_min(0), reduction="none"
    )
    return {
        "presence": _masked_mean(split(presence), split(taught)),
        "foreground": _masked_mean(split(foreground), split(everywhere)),
        "offset": _masked_mean(split(offset_error), split(positive)),
        "direction": _masked_mean(split(direction_error), split(positive)),
        "type": _masked_mean(split(type_loss), split(batch.bifurcation >= 0)),
    }


LOSS_WEIGHTS = {"presence": 1.0, "foreground": 0.5, "offset": 2.0, "direction": 1.0, "type": 0.5}


def turns_at(step: int) -> int:
    """Quarter turns of the consistency view at ``step``: 1, 2, 3 in turn (no host sync)."""
    return step % 3 + 1


def consistency_loss(
    plain: torch.Tensor, turned_back: torch.Tensor, models: int = 1
) -> torch.Tensor:
    """Disagreement between two views' heads on the same cells, per network (shape ``models``).

    Presence probabilities are compared on every cell, offsets and directions where either view
    sees a minutia (weighted by the two views' mean presence, held fixed so that the weight does
    not itself pull presence down); the sum is taken per minutia the views see, so that the loss
    does not shrink with how sparse minutiae are. Gradients flow into both views.
    """
    a, b = _per_network(plain, models), _per_network(turned_back, models)
    pa, pb = torch.sigmoid(a[:, 0]), torch.sigmoid(b[:, 0])
    presence = (pa - pb) ** 2
    weight = (0.5 * (pa + pb)).detach()
    offsets = ((torch.sigmoid(a[:, 1:3]) - torch.sigmoid(b[:, 1:3])) ** 2).sum(dim=1)
    direction = ((a[:, 3:5] - b[:, 3:5]) ** 2).sum(dim=1)
    disagreement = presence + weight * (offsets + direction)
    seen = weight.reshape(models, -1).sum(dim=1).clamp_min(1.0)
    return disagreement.reshape(models, -1).sum(dim=1) / seen


def _bernoulli_kl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(target || sigmoid(logits)) per element: zero where the two probabilities agree."""
    cross = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    negentropy = torch.special.xlogy(target, target) + torch.special.xlogy(1 - target, 1 - target)
    kl: torch.Tensor = cross + negentropy
    return kl


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, models: int = 1
) -> torch.Tensor:
    """How far a student's heads are from its teacher's on the same cells, per network.

    Presence and foreground probabilities are matched on every cell; offsets, direction and
    type where the teacher sees a minutia, weighted by its presence probability. The parts are
    weighted as the label losses are (:data:`LOSS_WEIGHTS`). Gradients flow into the student only.
    """
    s, t = _per_network(student, models), _per_network(teacher.detach(), models)
    probabilities = torch.sigmoid(t[:, [0, 5, 6]])
    sees = probabilities[:, 0]
    everywhere = torch.ones_like(sees)
    parts = {
        "presence": (_bernoulli_kl(s[:, 0], sees), everywhere),
        "foreground": (_bernoulli_kl(s[:, 6], probabilities[:, 2]), everywhere),
        "offset": ((torch.sigmoid(s[:, 1:3]) - torch.sigmoid(t[:, 1:3])).abs().mean(dim=1), sees),
        "direction": (((s[:, 3:5] - t[:, 3:5]) ** 2).mean(dim=1), sees),
        "type": (_bernoulli_kl(s[:, 5], probabilities[:, 1]), sees),
    }
    total = torch.zeros(models, device=student.device, dtype=student.dtype)
    for name, (values, weight) in parts.items():
        per_cell = (values * weight).reshape(models, -1).sum(dim=1)
        total = total + LOSS_WEIGHTS[name] * per_cell / weight.reshape(models, -1).sum(dim=1)
    return total


def step_losses(
    model: MinutiaeNet,
    batch: Batch,
    config: TrainConfig,
    step: int,
    models: int = 1,
    teacher: HalfTurnTeacher | None = None,
    simulated: SimulatedInt8 | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One step's losses per network (as :func:`losses`) and the weighted total to minimise.

    With ``config.consistency`` the batch is also seen turned (:func:`turns_at`), both views are
    taught the labels (the turned one's heads mapped back onto the batch's cells) and a
    ``consistency`` part is added. In the cycles ``config`` distils, ``teacher``'s heads on the
    batch add a ``distill`` part (:func:`distillation_loss`). In its quantisation-aware cycles
    the heads come from ``simulated``, ``model`` with the int8 model's rounding.
    """
    images = batch.images
    turns = turns_at(step)
    if config.consistency:
        images = torch.cat([images, torch.rot90(images, turns, dims=(2, 3))])
    forward: MinutiaeNet | SimulatedInt8 = model
    if config.quant_aware_at(step):
        if simulated is None or simulated.net is not model:
            raise ValueError(f"step {step} is quantisation-aware but no simulation of the model")
        forward = simulated
    heads = forward(images.contiguous(memory_format=torch.channels_last))
    if config.consistency:
        n = batch.images.shape[0]
        plain, turned = heads[:n], quarter_turns_back(heads[n:], turns)
        views = [losses(plain, batch, models), losses(turned, batch, models)]
        parts = {k: 0.5 * (views[0][k] + views[1][k]) for k in views[0]}
        parts["consistency"] = consistency_loss(plain, turned, models)
    else:
        parts = losses(heads, batch, models)
    if config.distilling_at(step):
        if teacher is None:
            raise ValueError(f"step {step} is distilled but no teacher was given")
        with torch.no_grad():
            taught = teacher(batch.images.contiguous(memory_format=torch.channels_last))
        parts["distill"] = distillation_loss(heads[: batch.images.shape[0]], taught, models)
    weights = {**LOSS_WEIGHTS, "consistency": config.consistency, "distill": config.distill}
    total = sum(weights[k] * v.sum() for k, v in parts.items())
    return parts, total  # type: ignore[return-value]


def learning_rate_at(config: TrainConfig, step: int) -> float:
    if step < config.steps:
        warm = min(1.0, (step + 1) / WARMUP_STEPS)
        return config.learning_rate * warm * 0.5 * (1 + math.cos(math.pi * step / config.steps))
    into = (step - config.steps) % config.refine_steps
    warm = min(1.0, (into + 1) / REFINE_WARMUP_STEPS)
    cosine = 0.5 * (1 + math.cos(math.pi * into / config.refine_steps))
    return config.learning_rate * REFINE_PEAK * warm * cosine


def sampling_weights(images: list[LabelledImage], synthetic_fraction: float) -> NDArray[np.float64]:
    """Per-image draw probabilities giving synthetic images ``synthetic_fraction`` of a batch."""
    synthetic = np.array([image.database == SYNTHETIC for image in images])
    count = int(synthetic.sum())
    if count == 0 or count == len(images):
        return np.full(len(images), 1.0 / len(images))
    return np.where(
        synthetic, synthetic_fraction / count, (1.0 - synthetic_fraction) / (len(images) - count)
    )


class UnfinishedRunError(Exception):
    """A checkpoint asked for as a finished network is missing, another run's, or unfinished."""


def finished_run(
    checkpoint: Path, config: TrainConfig | None = None
) -> tuple[TrainConfig, MinutiaeNet]:
    """The config and network of a finished run's ``checkpoint``, ready for inference.

    ``config``, when given, must be the one that wrote it.
    """
    if not checkpoint.exists():
        raise UnfinishedRunError(f"{checkpoint} does not exist: train that run first")
    state = torch.load(checkpoint, weights_only=False, map_location="cpu")
    if config is None:
        config = TrainConfig(**_with_defaults(state["config"]))
    elif not written_by(config, state["config"]):
        raise UnfinishedRunError(f"{checkpoint} was written by a different configuration")
    if state["step"] != config.total_steps:
        raise UnfinishedRunError(
            f"{checkpoint} stopped at step {state['step']} of {config.total_steps}: "
            "finish that run first"
        )
    model = MinutiaeNet(config.width)
    model.load_state_dict(state["model"])
    return config, model.eval()


def load_teacher(configs: list[TrainConfig], folder: Path) -> HalfTurnTeacher | None:
    """The frozen teachers of runs trained together, as one grouped network (None: no run
    distils). Each must be a finished run that trained on none of its student's held-out
    databases; runs trained together need teachers of one width.
    """
    if not any(c.teacher for c in configs):
        return None
    if not all(c.teacher for c in configs):
        raise ValueError("runs trained together must all learn from a teacher or none")
    nets, widths = [], set()
    for config in configs:
        taught, net = finished_run(folder / config.teacher)
        unseen = set(taught.databases) - set(config.databases)
        if unseen:
            raise ValueError(
                f"teacher {config.teacher} trained on {sorted(unseen)}, which this run holds out"
            )
        nets.append(net)
        widths.add(taught.width)
    if len(widths) != 1:
        raise ValueError(f"teachers trained together must share a width, got {sorted(widths)}")
    grouped = MinutiaeNet(widths.pop(), len(nets))
    grouped.load_state_dict(join([net.state_dict() for net in nets]))
    return HalfTurnTeacher(grouped)


def train(
    images: list[LabelledImage],
    config: TrainConfig,
    checkpoint: Path,
    device: torch.device | str = "cpu",
    foundation: Path | None = None,
) -> MinutiaeNet:
    """Train on ``device`` (resuming from ``checkpoint`` when the same config wrote it, or for a
    refined run from ``foundation``, the finished checkpoint of the run it refines).

    The device is not part of the config: a run resumes anywhere, though CPU and GPU arithmetic
    differ, so only the same device reproduces a run bit for bit.
    """
    device = torch.device(device)
    bank = ImageBank.build(images, sampling_weights(images, config.synthetic_fraction), device)
    torch.manual_seed(config.seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    model = MinutiaeNet(config.width).to(device)
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    teacher = load_teacher([config], checkpoint.parent)
    if teacher is not None:
        teacher.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    simulated = SimulatedInt8(model) if config.quant_aware_cycles else None
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    start = 0
    state = resumable_state(config, checkpoint, foundation)
    history = carried_history(config, state, None)
    if state is not None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        resume_generator(generator, state, config.seed)
        start = state["step"]
    model.train()
    total_steps = config.total_steps
    progress = tqdm(range(start, total_steps), initial=start, total=total_steps, mininterval=30)
    running: dict[str, torch.Tensor] = {}
    for step in progress:
        for group in optimiser.param_groups:
            group["lr"] = learning_rate_at(config, step)
        batch = make_batch(bank, config.batch_size, config.crop, generator, config.augmentation)
        per_network, total = step_losses(
            model, batch, config, step, teacher=teacher, simulated=simulated
        )
        parts = {k: v[0] for k, v in per_network.items()}
        optimiser.zero_grad(set_to_none=True)
        torch.autograd.backward(total)
        optimiser.step()
        with torch.no_grad():  # kept on the device: reading a value each step would stall a GPU
            for k, v in parts.items():
                running[k] = 0.98 * running.get(k, v) + 0.02 * v
        if (step + 1) % CHECKPOINT_EVERY == 0 or step + 1 == total_steps:
            save_checkpoint(
                checkpoint,
                config,
                model.state_dict(),
                optimiser.state_dict(),
                generator,
                step + 1,
                trained_with=history,
            )
            summary = {k: float(v) for k, v in running.items()}
            progress.set_postfix({k: f"{v:.3f}" for k, v in summary.items()}, refresh=False)
            tqdm.write(f"step {step + 1}: " + " ".join(f"{k} {v:.4f}" for k, v in summary.items()))
    model.eval()
    return model.cpu()
