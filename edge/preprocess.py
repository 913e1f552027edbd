"""Image preparation shared by the extractor and its training: resolution, contrast, padding."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image

MIN_STD = 1.0  # grey levels; keeps a blank image from being blown up into noise


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


def standardise(pixels: NDArray[np.uint8]) -> NDArray[np.float32]:
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
