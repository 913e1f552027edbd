"""Image preparation shared by the extractor and its training: resolution, contrast, padding."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image

MIN_STD = 1.0  # grey levels; keeps a blank image from being blown up into noise
# Background flattening at 500 ppi. The brightest pixel of a 4 x 4 block, then of 5 x 5 blocks
# (20 pixels, about two ridge periods, so the window always holds a valley), is the local
# background level; it is smoothed over about one ridge period. Only the final gain is computed
# per pixel, which keeps the cost to about a millisecond for a 388 x 374 image.
BACKGROUND_BLOCK = 4
BACKGROUND_REACH = 2  # blocks either side
BACKGROUND_SMOOTHING = 2.0  # Gaussian sigma, blocks
SMOOTHING_REACH = 6  # the Gaussian's taps either side, in blocks: three sigmas


def resample(pixels: NDArray[np.uint8], ppi: float, target_ppi: float) -> NDArray[np.uint8]:
    """Bilinear resize so the image is ``target_ppi``; unchanged within 0.1%."""
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 image, got {pixels.dtype} {pixels.shape}")
    if ppi <= 0:
        raise ValueError(f"resolution must be positive, got {ppi} ppi")
    scale = target_ppi / ppi
    if abs(scale - 1.0) < 1e-3:
        return pixels
    height, width = pixels.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def _block_max(pixels: NDArray[np.uint8], block: int) -> NDArray[np.uint8]:
    """The brightest pixel of each ``block`` x ``block`` tile, edges repeated to whole tiles."""
    height, width = pixels.shape
    padded = np.pad(pixels, ((0, -height % block), (0, -width % block)), mode="edge")
    columns = padded[:, 0::block]
    for offset in range(1, block):
        columns = np.maximum(columns, padded[:, offset::block])
    tiles = columns[0::block]
    for offset in range(1, block):
        tiles = np.maximum(tiles, columns[offset::block])
    return tiles


def _window_max(values: NDArray[np.uint8], reach: int) -> NDArray[np.uint8]:
    """The maximum over ``2 * reach + 1`` x ``2 * reach + 1`` neighbours, edges repeated."""
    height, width = values.shape
    padded = np.pad(values, reach, mode="edge")
    rows = padded[:height, :]
    for offset in range(1, 2 * reach + 1):
        rows = np.maximum(rows, padded[offset : offset + height, :])
    result = rows[:, :width]
    for offset in range(1, 2 * reach + 1):
        result = np.maximum(result, rows[:, offset : offset + width])
    return result


def _upsample(grid: NDArray[np.float32], factor: int, axis: int) -> NDArray[np.float32]:
    """Bilinear ``factor`` x along ``axis``, cell centre to pixel centre, edges held."""
    moved = np.moveaxis(grid, axis, 0)
    padded = np.concatenate([moved[:1], moved, moved[-1:]])
    below, centre, above = padded[:-2], padded[1:-1], padded[2:]
    out = np.empty((factor * len(moved), *moved.shape[1:]), dtype=grid.dtype)
    for k in range(factor):
        shift = (k + 0.5) / factor - 0.5  # the pixel centre, in cells from its own cell's
        neighbour = below if shift < 0 else above
        # written in place, phase by phase, to spare a stacked copy of the full-size image
        out[k::factor] = centre + abs(shift) * (neighbour - centre)
    return np.moveaxis(out, 0, axis)


def smoothing_taps() -> NDArray[np.float32]:
    """The background level's Gaussian, one axis: sampled, cut at ``SMOOTHING_REACH``,
    normalised. The model graph (models.train.preparation) smooths with the same taps."""
    offsets = np.arange(-SMOOTHING_REACH, SMOOTHING_REACH + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (offsets / BACKGROUND_SMOOTHING) ** 2)
    normalised: NDArray[np.float32] = (taps / taps.sum()).astype(np.float32)
    return normalised


def _smooth(values: NDArray[np.float32]) -> NDArray[np.float32]:
    """Separable Gaussian smoothing (rows, then columns), edges repeated, in float32."""
    height, width = values.shape
    taps = smoothing_taps()
    padded = np.pad(values, SMOOTHING_REACH, mode="edge")
    rows = taps[0] * padded[:, :width]
    for k in range(1, len(taps)):
        rows += taps[k] * padded[:, k : k + width]
    smooth: NDArray[np.float32] = taps[0] * rows[:height]
    for k in range(1, len(taps)):
        smooth += taps[k] * rows[k : k + height]
    return smooth


def background_gain(pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Per pixel, 255 over the local brightness of the valleys and the empty platen."""
    height, width = pixels.shape
    tiles = _window_max(_block_max(pixels, BACKGROUND_BLOCK), BACKGROUND_REACH)
    level = np.maximum(_smooth(tiles.astype(np.float32)), np.float32(1.0))
    gain: NDArray[np.float32] = (255.0 / level).astype(np.float32)
    full = _upsample(_upsample(gain, BACKGROUND_BLOCK, 0), BACKGROUND_BLOCK, 1)
    return full[:height, :width]


def flatten_background(pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Divide out the local background so every sensor's valleys are near white (255).

    Optical sensors give a white platen, capacitive ones a grey and uneven one; the ridges'
    darkness relative to their surroundings is what the network should see.
    """
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 image, got {pixels.dtype} {pixels.shape}")
    flat: NDArray[np.float32] = pixels * background_gain(pixels)
    return np.minimum(flat, np.float32(255.0), out=flat)


def standardise(
    pixels: NDArray[np.uint8] | NDArray[np.float32], multiple: int = 1
) -> NDArray[np.float32]:
    """Zero mean, unit standard deviation over the image, so sensors' contrast differs less;
    then zero-padded (the mean) on the bottom and right up to a multiple of ``multiple``.

    Written straight into the padded array, which spares a full-size copy per extraction.
    """
    values = np.asarray(pixels, dtype=np.float32)
    mean = float(values.mean())
    std = max(float(values.std()), MIN_STD)
    height, width = values.shape
    out = np.empty((height + -height % multiple, width + -width % multiple), dtype=np.float32)
    out[height:] = 0.0
    out[:height, width:] = 0.0
    image = out[:height, :width]
    np.subtract(values, mean, out=image)
    np.divide(image, std, out=image)
    return out
