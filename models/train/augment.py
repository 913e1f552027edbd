"""Seeded, label-correct training crops: rotation, scale, gamma and noise, plus cell targets.

Points and directions are moved by the same linear map as the pixels, in pixel axes with y down,
so a rotated ridge ending keeps pointing into its ridge. No flips: a mirror image would need
mirrored directions and changes handedness, which real captures never do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from edge.preprocess import standardise
from models.train.data import LabelledImage
from models.train.net import CELL


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor  # N x 1 x S x S standardised
    presence: torch.Tensor  # N x G x G, 0/1
    offsets: torch.Tensor  # N x 2 x G x G, position inside the cell, 0..1
    direction: torch.Tensor  # N x 2 x G x G, cos/sin of the ISO angle
    bifurcation: torch.Tensor  # N x G x G, 1 bifurcation, 0 ending, -1 unknown
    foreground: torch.Tensor  # N x G x G, 0/1


FOREGROUND_STD = 0.45  # local standard deviation (standardised units) that counts as ridges


def _sample_crop(
    image: LabelledImage, size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, NDArray[np.float32]]:
    height, width = image.pixels.shape
    gamma = math.exp(rng.uniform(-0.4, 0.4))
    pixels = 255.0 * (image.pixels.astype(np.float32) / 255.0) ** gamma
    pixels += rng.normal(0.0, rng.uniform(0.0, 8.0), pixels.shape)
    grey = standardise(np.clip(pixels, 0, 255).astype(np.uint8))
    theta = rng.uniform(-math.pi, math.pi)
    scale = math.exp(rng.uniform(-0.1, 0.1))
    centre = np.array(
        [rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height], dtype=np.float64
    )
    # forward map (source -> crop): u = scale * R(theta) (p - centre) + size/2
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    forward = scale * rot
    inverse = np.linalg.inv(forward)
    half = size / 2.0
    u = np.arange(size, dtype=np.float64) + 0.5 - half
    grid_u, grid_v = np.meshgrid(u, u)
    src = np.einsum("ij,jhw->ihw", inverse, np.stack([grid_u, grid_v])) + centre[:, None, None]
    gx = src[0] / width * 2 - 1  # pixel centres, align_corners=False
    gy = src[1] / height * 2 - 1
    grid = torch.from_numpy(np.stack([gx, gy], axis=-1)[None].astype(np.float32))
    sampled = F.grid_sample(
        torch.from_numpy(grey)[None, None], grid, mode="bilinear", align_corners=False
    )[0]
    labels = image.minutiae.copy()
    points = labels[:, :2].astype(np.float64) + 0.5 - centre
    labels[:, :2] = (points @ forward.T + half - 0.5).astype(np.float32)
    labels[:, 2:4] = (labels[:, 2:4].astype(np.float64) @ rot.T).astype(np.float32)
    return sampled, labels


def _targets(
    crop: torch.Tensor, labels: NDArray[np.float32], size: int
) -> tuple[torch.Tensor, ...]:
    cells = size // CELL
    presence = torch.zeros(cells, cells)
    offsets = torch.zeros(2, cells, cells)
    direction = torch.zeros(2, cells, cells)
    bifurcation = torch.full((cells, cells), -1.0)
    for x, y, dx, dy, kind in labels.tolist():
        # pixel index x covers [x, x+1); the cell holding its centre owns it
        col, row = math.floor((x + 0.5) / CELL), math.floor((y + 0.5) / CELL)
        if not (0 <= col < cells and 0 <= row < cells):
            continue
        presence[row, col] = 1.0
        offsets[0, row, col] = min(max((x + 0.5) / CELL - col, 0.0), 1.0)
        offsets[1, row, col] = min(max((y + 0.5) / CELL - row, 0.0), 1.0)
        direction[0, row, col] = float(dx)  # cos of the ISO angle
        direction[1, row, col] = -float(dy)  # sin: ISO counts counter-clockwise, y points down
        bifurcation[row, col] = {1: 0.0, 2: 1.0}.get(int(kind), -1.0)
    image = crop[None, None]
    mean = F.avg_pool2d(image, 2 * CELL, CELL, padding=CELL // 2)
    mean_sq = F.avg_pool2d(image * image, 2 * CELL, CELL, padding=CELL // 2)
    local_std = (mean_sq - mean * mean).clamp_min(0).sqrt()[0, 0, :cells, :cells]
    foreground = ((local_std > FOREGROUND_STD) | (presence > 0)).float()
    return presence, offsets, direction, bifurcation, foreground


def make_batch(
    images: list[LabelledImage],
    batch_size: int,
    size: int,
    rng: np.random.Generator,
    weights: NDArray[np.float64] | None = None,
) -> Batch:
    """``batch_size`` crops of images drawn with probabilities ``weights`` (uniform if None)."""
    crops, parts = [], []
    for index in rng.choice(len(images), batch_size, p=weights):
        crop, labels = _sample_crop(images[index], size, rng)
        crops.append(crop)
        parts.append(_targets(crop[0], labels, size))
    stacked = [torch.stack(p) for p in zip(*parts, strict=True)]
    return Batch(torch.stack(crops), *stacked)
