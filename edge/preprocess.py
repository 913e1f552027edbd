"""Image preparation shared by the extractor and its training: resolution, contrast, padding."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

MIN_STD = 1.0  # grey levels; keeps a blank image from being blown up into noise
# Background flattening at 500 ppi. The brightest pixel of a 4 x 4 block, then of 5 x 5 blocks
# (20 pixels, about two ridge periods, so the window always holds a valley), is the local
# background level; it is smoothed over about one ridge period. Working on blocks keeps the
# cost to a fraction of a millisecond.
BACKGROUND_BLOCK = 4
BACKGROUND_REACH = 2  # blocks either side
BACKGROUND_SMOOTHING = 2.0  # Gaussian sigma, blocks
_GAIN = (255.0 / np.maximum(np.arange(256), 1)).astype(np.float32)  # by background grey level


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


def _running_max(values: NDArray[np.uint8], radius: int, axis: int) -> NDArray[np.uint8]:
    """Maximum over a window of ``2 * radius + 1`` along ``axis``, edges repeated (van Herk)."""
    size = 2 * radius + 1
    moved = np.moveaxis(values, axis, -1)
    length = moved.shape[-1]
    blocks = -(-(length + 2 * radius) // size)
    padded = np.pad(
        moved, [(0, 0), (radius, blocks * size - length - radius)], mode="edge"
    ).reshape(moved.shape[0], blocks, size)
    # Prefix maxima within each block and suffix maxima within each block: any window of
    # ``size`` spans the tail of one block and the head of the next.
    prefix = np.maximum.accumulate(padded, axis=2).reshape(moved.shape[0], -1)
    suffix = np.maximum.accumulate(padded[:, :, ::-1], axis=2)[:, :, ::-1].reshape(
        moved.shape[0], -1
    )
    result = np.maximum(suffix[:, :length], prefix[:, size - 1 : size - 1 + length])
    return np.moveaxis(result, -1, axis)


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


def background_gain(pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Per pixel, 255 over the local brightness of the valleys and the empty platen."""
    height, width = pixels.shape
    tiles = _block_max(pixels, BACKGROUND_BLOCK)
    brightest = _running_max(_running_max(tiles, BACKGROUND_REACH, 0), BACKGROUND_REACH, 1)
    smooth = Image.fromarray(np.ascontiguousarray(brightest)).filter(
        ImageFilter.GaussianBlur(BACKGROUND_SMOOTHING)
    )
    rows, cols = tiles.shape
    full = smooth.resize(
        (cols * BACKGROUND_BLOCK, rows * BACKGROUND_BLOCK), Image.Resampling.BILINEAR
    )
    gain: NDArray[np.float32] = _GAIN[np.asarray(full)[:height, :width]]
    return gain


def flatten_background(pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Divide out the local background so every sensor's valleys are near white (255).

    Optical sensors give a white platen, capacitive ones a grey and uneven one; the ridges'
    darkness relative to their surroundings is what the network should see.
    """
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 image, got {pixels.dtype} {pixels.shape}")
    flat: NDArray[np.float32] = np.minimum(pixels * background_gain(pixels), 255.0)
    return flat


def standardise(pixels: NDArray[np.uint8] | NDArray[np.float32]) -> NDArray[np.float32]:
    """Zero mean, unit standard deviation over the image, so sensors' contrast differs less."""
    values = pixels.astype(np.float32)
    mean = float(values.mean())
    std = max(float(values.std()), MIN_STD)
    return (values - mean) / std


def pad_to_multiple(image: NDArray[np.float32], multiple: int) -> NDArray[np.float32]:
    """Zero-pad (the standardised mean) on the bottom and right up to a multiple of ``multiple``."""
    height, width = image.shape
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w)))
