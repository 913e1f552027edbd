"""Seeded, label-correct training crops made a whole batch at a time, on the training device.

Points and directions are moved by the same linear map as the pixels, in pixel axes with y down,
so a rotated ridge ending keeps pointing into its ridge. No flips: a mirror image would need
mirrored directions and changes handedness, which real captures never do.

Everything is torch on one device, so a GPU run makes its batches where it trains instead of
waiting on per-crop Python; on a CPU the same code is the CPU recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from edge.preprocess import MIN_STD
from models.train.data import OPEN, LabelledImage
from models.train.net import CELL

Augmentation = Literal["basic", "strong"]
AUGMENTATIONS: tuple[Augmentation, ...] = get_args(Augmentation)
FOREGROUND_STD = 0.45  # local standard deviation (standardised units) that counts as ridges


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor  # N x 1 x S x S standardised
    presence: torch.Tensor  # N x G x G, 0/1
    offsets: torch.Tensor  # N x 2 x G x G, position inside the cell, 0..1
    direction: torch.Tensor  # N x 2 x G x G, cos/sin of the ISO angle
    bifurcation: torch.Tensor  # N x G x G, 1 bifurcation, 0 ending, -1 unknown
    foreground: torch.Tensor  # N x G x G, 0/1
    open: torch.Tensor  # N x G x G, 1 where an OPEN row (and no label) leaves presence untaught


@dataclass(frozen=True)
class ImageBank:
    """The training images stacked on one device, padded to the largest, with their minutiae."""

    pixels: torch.Tensor  # N x H x W grey levels 0..255, 0 beyond each image
    inside: torch.Tensor  # N x H x W, 1 on the image, 0 on the padding
    sizes: torch.Tensor  # N x 2: height, width
    minutiae: torch.Tensor  # N x K x 5 rows as in LabelledImage, zero beyond ``counts``
    counts: torch.Tensor  # N
    weights: torch.Tensor  # N draw probabilities

    @classmethod
    def build(
        cls,
        images: list[LabelledImage],
        weights: NDArray[np.float64] | None = None,
        device: torch.device | str = "cpu",
    ) -> ImageBank:
        height = max(image.pixels.shape[0] for image in images)
        width = max(image.pixels.shape[1] for image in images)
        most = max(1, max(len(image.minutiae) for image in images))
        pixels = np.zeros((len(images), height, width), np.float32)
        inside = np.zeros_like(pixels)
        minutiae = np.zeros((len(images), most, 5), np.float32)
        for i, image in enumerate(images):
            h, w = image.pixels.shape
            pixels[i, :h, :w] = image.pixels
            inside[i, :h, :w] = 1.0
            minutiae[i, : len(image.minutiae)] = image.minutiae
        if weights is None:
            weights = np.full(len(images), 1.0 / len(images))
        return cls(
            torch.from_numpy(pixels).to(device),
            torch.from_numpy(inside).to(device),
            torch.tensor([i.pixels.shape for i in images], dtype=torch.float32, device=device),
            torch.from_numpy(minutiae).to(device),
            torch.tensor([len(i.minutiae) for i in images], device=device),
            torch.from_numpy(weights).to(device),
        )


@dataclass(frozen=True)
class Crops:
    images: torch.Tensor  # N x 1 x S x S standardised
    minutiae: torch.Tensor  # N x K x 5 in crop pixels
    labelled: torch.Tensor  # N x K, True for a real label row


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=generator.device)


def _smooth_field(generator: torch.Generator, n: int, height: int, width: int) -> torch.Tensor:
    """N x 1 x H x W values around 0 varying over about a third of the image."""
    coarse = torch.randn(n, 1, 4, 4, generator=generator, device=generator.device)
    return F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)


def _blur(pixels: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of N x 1 x H x W with a per-image sigma (0: unchanged)."""
    n = pixels.shape[0]
    offsets = torch.arange(-3, 4, dtype=pixels.dtype, device=pixels.device)
    spread = sigma.clamp_min(1e-3)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None] / spread) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    grouped = pixels.transpose(0, 1)  # 1 x N x H x W: one group per image
    grouped = F.conv2d(grouped, kernel[:, None, :, None], padding=(3, 0), groups=n)
    grouped = F.conv2d(grouped, kernel[:, None, None, :], padding=(0, 3), groups=n)
    return grouped.transpose(0, 1)


def _sensor_look(
    pixels: torch.Tensor, inside: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Other sensors' looks: ridge width (dry/wet), blur, and uneven contrast and brightness."""
    n, _, height, width = pixels.shape
    # Ridges are dark: a grey-level opening thins them (dry), a closing thickens them (wet).
    thicker = -F.max_pool2d(-pixels, 3, 1, 1)
    thinner = F.max_pool2d(pixels, 3, 1, 1)
    amount = _uniform(generator, n, -0.7, 0.7)[:, None, None, None]
    pixels = torch.where(
        amount > 0, pixels + amount * (thicker - pixels), pixels - amount * (thinner - pixels)
    )
    blurred = torch.rand(n, generator=generator, device=generator.device) < 0.5
    pixels = _blur(pixels, torch.where(blurred, _uniform(generator, n, 0.5, 1.3), 0.0))
    count = inside.sum(dim=(1, 2, 3)).clamp_min(1)
    mean = (pixels * inside).sum(dim=(1, 2, 3)) / count
    contrast = torch.exp(0.35 * _smooth_field(generator, n, height, width))
    brightness = 25.0 * _smooth_field(generator, n, height, width)
    centred = mean[:, None, None, None]
    return (centred + (pixels - centred) * contrast + brightness) * inside


def sample_crops(
    bank: ImageBank,
    index: torch.Tensor,
    size: int,
    generator: torch.Generator,
    augmentation: Augmentation = "basic",
) -> Crops:
    """Rotated, scaled crops of the images ``index`` with their labels moved the same way.

    Contrast, noise and (``strong``) other sensors' looks are applied to the whole image before
    the per-image standardisation the extractor does, so a crop's statistics are a capture's.
    """
    n = index.shape[0]
    device = bank.pixels.device
    pixels = bank.pixels[index][:, None]
    inside = bank.inside[index][:, None]
    gamma = torch.exp(_uniform(generator, n, -0.4, 0.4))[:, None, None, None]
    pixels = 255.0 * (pixels / 255.0) ** gamma
    if augmentation == "strong":
        pixels = _sensor_look(pixels, inside, generator)
    sigma = _uniform(generator, n, 0.0, 8.0)[:, None, None, None]
    noise = torch.randn(pixels.shape, generator=generator, device=device)
    pixels = torch.floor((pixels + sigma * noise).clamp(0, 255)) * inside
    count = inside.sum(dim=(1, 2, 3), keepdim=True)
    mean = pixels.sum(dim=(1, 2, 3), keepdim=True) / count
    spread = (((pixels - mean) * inside) ** 2).sum(dim=(1, 2, 3), keepdim=True) / count
    grey = (pixels - mean) / spread.sqrt().clamp_min(MIN_STD) * inside

    theta = _uniform(generator, n, -math.pi, math.pi)
    scale = torch.exp(_uniform(generator, n, -0.1, 0.1))
    heights, widths = bank.sizes[index, 0], bank.sizes[index, 1]
    centre = torch.stack(
        [_uniform(generator, n, 0.3, 0.7) * widths, _uniform(generator, n, 0.3, 0.7) * heights],
        dim=1,
    )
    cos, sin = torch.cos(theta), torch.sin(theta)
    rotation = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    forward = scale[:, None, None] * rotation  # source -> crop: u = forward (p - centre) + S/2
    inverse = rotation.transpose(1, 2) / scale[:, None, None]
    half = size / 2.0
    u = torch.arange(size, dtype=torch.float32, device=device) + 0.5 - half
    grid_v, grid_u = torch.meshgrid(u, u, indexing="ij")
    crop_points = torch.stack([grid_u, grid_v], dim=-1).reshape(1, -1, 2)
    source = crop_points @ inverse.transpose(1, 2) + centre[:, None, :]
    padded = torch.tensor([pixels.shape[3], pixels.shape[2]], dtype=torch.float32, device=device)
    grid = (source / padded * 2 - 1).reshape(n, size, size, 2)  # pixel centres, as below
    crops = F.grid_sample(grey, grid, mode="bilinear", align_corners=False)

    labels = bank.minutiae[index].clone()
    labelled = torch.arange(labels.shape[1], device=device)[None] < bank.counts[index][:, None]
    points = labels[..., :2] + 0.5 - centre[:, None, :]
    labels[..., :2] = points @ forward.transpose(1, 2) + half - 0.5
    labels[..., 2:4] = labels[..., 2:4] @ rotation.transpose(1, 2)
    return Crops(crops, labels, labelled)


def cell_targets(crops: Crops) -> Batch:
    """Per-cell targets; when two minutiae share a cell the later label row wins.

    ``OPEN`` rows mark their cell open unless a label lies there too.
    """
    n, _, size, _ = crops.images.shape
    cells = size // CELL
    device = crops.images.device
    x, y = crops.minutiae[..., 0], crops.minutiae[..., 1]
    col = torch.floor((x + 0.5) / CELL).long()
    row = torch.floor((y + 0.5) / CELL).long()
    inside = crops.labelled & (col >= 0) & (col < cells) & (row >= 0) & (row < cells)
    is_open = crops.minutiae[..., 4] == OPEN
    keep = inside & ~is_open
    # Flat cell indices, with one spare slot past the end that swallows the rows not kept; no
    # boolean indexing, so a GPU never waits for the host.
    spare = n * cells * cells
    image = torch.arange(n, device=device)[:, None]
    key = torch.where(keep, (image * cells + row) * cells + col, spare).flatten()
    order = torch.arange(key.numel(), device=device)
    winner = torch.full((spare + 1,), -1, dtype=torch.long, device=device)
    winner.scatter_reduce_(0, key, order, reduce="amax")
    slot = torch.where(keep.flatten() & (winner[key] == order), key, spare)
    rows = crops.minutiae.reshape(-1, 5)
    cell_row = (slot // cells) % cells
    cell_col = slot % cells
    kind = rows[:, 4].round()

    def plane(values: torch.Tensor, empty: float) -> torch.Tensor:
        flat = torch.full((spare + 1,), empty, device=device)
        return flat.scatter(0, slot, values)[:spare].reshape(n, cells, cells)

    presence = plane(torch.ones_like(x).flatten(), 0.0)
    offsets = torch.stack(
        [
            plane(((rows[:, 0] + 0.5) / CELL - cell_col).clamp(0, 1), 0.0),
            plane(((rows[:, 1] + 0.5) / CELL - cell_row).clamp(0, 1), 0.0),
        ],
        dim=1,
    )
    direction = torch.stack(
        # cos of the ISO angle; sin: ISO counts counter-clockwise, y points down
        [plane(rows[:, 2], 0.0), plane(-rows[:, 3], 0.0)],
        dim=1,
    )
    bifurcation = plane(torch.where(kind == 2, 1.0, torch.where(kind == 1, 0.0, -1.0)), -1.0)

    mean = F.avg_pool2d(crops.images, 2 * CELL, CELL, padding=CELL // 2)
    mean_sq = F.avg_pool2d(crops.images**2, 2 * CELL, CELL, padding=CELL // 2)
    local_std = (mean_sq - mean * mean).clamp_min(0).sqrt()[:, 0, :cells, :cells]
    foreground = ((local_std > FOREGROUND_STD) | (presence > 0)).float()
    open_key = torch.where(inside & is_open, (image * cells + row) * cells + col, spare).flatten()
    marked = torch.zeros(spare + 1, device=device).scatter(0, open_key, 1.0)[:spare]
    open_cells = marked.reshape(n, cells, cells) * (presence == 0)
    return Batch(crops.images, presence, offsets, direction, bifurcation, foreground, open_cells)


def make_batch(
    bank: ImageBank,
    batch_size: int,
    size: int,
    generator: torch.Generator,
    augmentation: Augmentation = "basic",
) -> Batch:
    """``batch_size`` crops of images drawn with the bank's probabilities."""
    index = torch.multinomial(bank.weights, batch_size, replacement=True, generator=generator)
    return cell_targets(sample_crops(bank, index, size, generator, augmentation))
