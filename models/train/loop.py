"""The training loop: seeded batches, a warm-up + cosine schedule, resumable checkpoints."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from tqdm import tqdm

from models.train.augment import Batch, make_batch
from models.train.data import SYNTHETIC, LabelledImage
from models.train.net import MinutiaeNet

PRESENCE_POS_WEIGHT = 4.0  # about 2% of cells hold a minutia
WARMUP_STEPS = 200


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


def losses(heads: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
    presence_logit = heads[:, 0]
    positive = batch.presence > 0
    pos_weight = torch.tensor(PRESENCE_POS_WEIGHT)
    parts = {
        "presence": F.binary_cross_entropy_with_logits(
            presence_logit, batch.presence, pos_weight=pos_weight
        ),
        "foreground": F.binary_cross_entropy_with_logits(heads[:, 6], batch.foreground),
    }
    mask = positive[:, None].expand(-1, 2, -1, -1)
    if positive.any():
        parts["offset"] = F.l1_loss(torch.sigmoid(heads[:, 1:3])[mask], batch.offsets[mask])
        parts["direction"] = F.mse_loss(heads[:, 3:5][mask], batch.direction[mask])
    typed = batch.bifurcation >= 0
    if typed.any():
        parts["type"] = F.binary_cross_entropy_with_logits(
            heads[:, 5][typed], batch.bifurcation[typed]
        )
    return parts


LOSS_WEIGHTS = {"presence": 1.0, "foreground": 0.5, "offset": 2.0, "direction": 1.0, "type": 0.5}


def _learning_rate(config: TrainConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    return config.learning_rate * warm * 0.5 * (1 + math.cos(math.pi * step / config.steps))


def sampling_weights(images: list[LabelledImage], synthetic_fraction: float) -> NDArray[np.float64]:
    """Per-image draw probabilities giving synthetic images ``synthetic_fraction`` of a batch."""
    synthetic = np.array([image.database == SYNTHETIC for image in images])
    count = int(synthetic.sum())
    if count == 0 or count == len(images):
        return np.full(len(images), 1.0 / len(images))
    return np.where(
        synthetic, synthetic_fraction / count, (1.0 - synthetic_fraction) / (len(images) - count)
    )


def train(images: list[LabelledImage], config: TrainConfig, checkpoint: Path) -> MinutiaeNet:
    """Train (resuming from ``checkpoint`` when it was written by the same config)."""
    weights = sampling_weights(images, config.synthetic_fraction)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = MinutiaeNet(config.width)
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    start = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        if state["config"] == asdict(config):
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            start = state["step"]
        else:
            tqdm.write(f"ignoring {checkpoint}: written by a different configuration")
    model.train()
    progress = tqdm(range(start, config.steps), initial=start, total=config.steps, mininterval=30)
    running: dict[str, float] = {}
    for step in progress:
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(config, step)
        batch = make_batch(images, config.batch_size, config.crop, rng, weights)
        heads = model(batch.images.contiguous(memory_format=torch.channels_last))
        parts = losses(heads, batch)
        total = sum(LOSS_WEIGHTS[k] * v for k, v in parts.items())
        optimiser.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[union-attr]
        optimiser.step()
        for k, v in parts.items():
            value = v.item()
            running[k] = 0.98 * running.get(k, value) + 0.02 * value
        progress.set_postfix({k: f"{v:.3f}" for k, v in running.items()}, refresh=False)
        if (step + 1) % 250 == 0 or step + 1 == config.steps:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            torch.save(
                {
                    "config": asdict(config),
                    "model": model.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "step": step + 1,
                },
                checkpoint.with_suffix(".tmp"),
            )
            checkpoint.with_suffix(".tmp").replace(checkpoint)
            tqdm.write(f"step {step + 1}: " + " ".join(f"{k} {v:.4f}" for k, v in running.items()))
    model.eval()
    return model
