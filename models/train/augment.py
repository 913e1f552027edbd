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


# Scale and rotation drawn per crop; a crop of ``size`` px then reads source pixels no farther
# from its centre than half its diagonal over the smallest scale.
LOG_SCALE_RANGE = 0.1
# Whole-image standardisation statistics come from this many pixels drawn at random from the
# image: about 1 % of a standard deviation from the exact figures at a tenth of the work. A
# regular grid is cheaper still but aliases with ridges of twice its pitch.
STATS_SAMPLES = 16384


def window_side(size: int) -> int:
    """Side of the square of source pixels that holds every pixel a ``size`` crop can read.

    Half the crop's diagonal over the smallest scale, plus one pixel for the bilinear
    neighbour and one for rounding the centre down, on each side.
    """
    reach = size / 2 * math.sqrt(2) / math.exp(-LOG_SCALE_RANGE) + 2
    return 2 * math.ceil(reach)


def _captured(
    pixels: torch.Tensor,
    inside: torch.Tensor,
    gamma: torch.Tensor,
    sigma: torch.Tensor,
    generator: torch.Generator,
    augmentation: Augmentation,
) -> torch.Tensor:
    """Grey levels as another capture of the same finger: gamma, (strong) a sensor look, noise."""
    pixels = 255.0 * (pixels / 255.0) ** gamma
    if augmentation == "strong":
        pixels = _sensor_look(pixels, inside, generator)
    noise = torch.randn(pixels.shape, generator=generator, device=pixels.device)
    return torch.floor((pixels + sigma * noise).clamp(0, 255)) * inside


def _statistics(pixels: torch.Tensor, inside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean and standard deviation (at least MIN_STD) over the image's own pixels."""
    count = inside.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)
    mean = pixels.sum(dim=(1, 2, 3), keepdim=True) / count
    spread = (((pixels - mean) * inside) ** 2).sum(dim=(1, 2, 3), keepdim=True) / count
    return mean, spread.sqrt().clamp_min(MIN_STD)


def source_windows(
    bank: ImageBank, index: torch.Tensor, origin: torch.Tensor, side: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """N x 1 x side x side pixels of images ``index`` from integer ``origin`` (x, y), and the
    mask of those on the image; 0 beyond it. One gather, so a GPU never waits for the host.
    """
    _, height, width = bank.pixels.shape
    steps = torch.arange(side, device=origin.device)
    rows = origin[:, 1, None].long() + steps
    cols = origin[:, 0, None].long() + steps
    sizes = bank.sizes[index].long()
    row_in = (rows >= 0) & (rows < sizes[:, 0, None])
    col_in = (cols >= 0) & (cols < sizes[:, 1, None])
    inside = (row_in[:, :, None] & col_in[:, None, :]).to(bank.pixels.dtype)[:, None]
    flat = (index[:, None, None] * height + rows.clamp(0, height - 1)[:, :, None]) * width
    flat = flat + cols.clamp(0, width - 1)[:, None, :]
    return torch.take(bank.pixels, flat)[:, None] * inside, inside


def random_pixels(bank: ImageBank, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """N x 1 x 1 x STATS_SAMPLES grey levels drawn uniformly (with replacement) from each of
    the images ``index``, padding excluded."""
    n = index.shape[0]
    _, height, width = bank.pixels.shape
    draws = torch.rand(n, 2, STATS_SAMPLES, generator=generator, device=generator.device)
    sizes = bank.sizes[index]
    rows = (draws[:, 0] * sizes[:, 0, None]).long()
    cols = (draws[:, 1] * sizes[:, 1, None]).long()
    flat = (index[:, None] * height + rows) * width + cols
    return torch.take(bank.pixels, flat)[:, None, None, :]


def resample(grey: torch.Tensor, origin: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of N x 1 x H x W ``grey``, whose top-left pixel is at image pixel
    ``origin`` (N x 2, x y), at image points ``source`` (N x S x S x 2, pixel centres at
    i + 0.5); 0 off ``grey``.
    """
    extent = torch.tensor([grey.shape[3], grey.shape[2]], dtype=source.dtype, device=source.device)
    grid = (source - origin[:, None, None, :]) / extent * 2 - 1
    return F.grid_sample(grey, grid, mode="bilinear", align_corners=False)


def sample_crops(
    bank: ImageBank,
    index: torch.Tensor,
    size: int,
    generator: torch.Generator,
    augmentation: Augmentation = "basic",
    window: bool = True,
) -> Crops:
    """Rotated, scaled crops of the images ``index`` with their labels moved the same way.

    Contrast, noise and (``strong``) other sensors' looks are applied before the per-image
    standardisation the extractor does, so a crop's statistics are a capture's. With ``window``
    (not for ``strong``, whose looks vary over the whole image) only the square a crop can read
    is made into a capture, and the statistics come from pixels drawn at random from the whole
    image made into a capture alike; without it the whole image is, which costs several times as
    much.
    """
    n = index.shape[0]
    device = bank.pixels.device
    gamma = torch.exp(_uniform(generator, n, -0.4, 0.4))[:, None, None, None]
    sigma = _uniform(generator, n, 0.0, 8.0)[:, None, None, None]
    theta = _uniform(generator, n, -math.pi, math.pi)
    scale = torch.exp(_uniform(generator, n, -LOG_SCALE_RANGE, LOG_SCALE_RANGE))
    heights, widths = bank.sizes[index, 0], bank.sizes[index, 1]
    centre = torch.stack(
        [_uniform(generator, n, 0.3, 0.7) * widths, _uniform(generator, n, 0.3, 0.7) * heights],
        dim=1,
    )
    if window and augmentation != "strong":
        side = window_side(size)
        origin = torch.floor(centre) - side // 2
        pixels, inside = source_windows(bank, index, origin, side)
        pixels = _captured(pixels, inside, gamma, sigma, generator, augmentation)
        sample = random_pixels(bank, index, generator)
        everywhere = torch.ones_like(sample)
        sample = _captured(sample, everywhere, gamma, sigma, generator, augmentation)
        mean, std = _statistics(sample, everywhere)
    else:
        origin = torch.zeros(n, 2, device=device)
        inside = bank.inside[index][:, None]
        pixels = _captured(
            bank.pixels[index][:, None], inside, gamma, sigma, generator, augmentation
        )
        mean, std = _statistics(pixels, inside)
    grey = (pixels - mean) / std * inside

    cos, sin = torch.cos(theta), torch.sin(theta)
    rotation = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    forward = scale[:, None, None] * rotation  # source -> crop: u = forward (p - centre) + S/2
    inverse = rotation.transpose(1, 2) / scale[:, None, None]
    half = size / 2.0
    u = torch.arange(size, dtype=torch.float32, device=device) + 0.5 - half
    grid_v, grid_u = torch.meshgrid(u, u, indexing="ij")
    crop_points = torch.stack([grid_u, grid_v], dim=-1).reshape(1, -1, 2)
    source = crop_points @ inverse.transpose(1, 2) + centre[:, None, :]
    crops = resample(grey, origin, source.reshape(n, size, size, 2))

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
