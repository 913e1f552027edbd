"""Small numpy raster operations the generator needs (no scipy): sampling, blur, erosion, noise."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatImage = npt.NDArray[np.float32]
BoolImage = npt.NDArray[np.bool_]


def bilinear_sample(
    image: FloatImage, xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64], fill: float
) -> FloatImage:
    """Sample ``image`` at fractional pixel positions; positions outside it read ``fill``."""
    height, width = image.shape
    padded = np.pad(image, 1, constant_values=fill)
    # One pixel of padding lets every position within a pixel of the edge blend towards fill.
    px = np.clip(xs + 1.0, 0.0, width + 1.0)
    py = np.clip(ys + 1.0, 0.0, height + 1.0)
    x0 = np.minimum(np.floor(px).astype(np.intp), width)
    y0 = np.minimum(np.floor(py).astype(np.intp), height)
    fx = (px - x0).astype(np.float32)
    fy = (py - y0).astype(np.float32)
    top = padded[y0, x0] * (1 - fx) + padded[y0, x0 + 1] * fx
    bottom = padded[y0 + 1, x0] * (1 - fx) + padded[y0 + 1, x0 + 1] * fx
    out = top * (1 - fy) + bottom * fy
    outside = (xs < -1) | (xs > width) | (ys < -1) | (ys > height)
    out[outside] = fill
    sampled: FloatImage = out.astype(np.float32)
    return sampled


def gaussian_blur(image: FloatImage, sigma: float) -> FloatImage:
    """Separable Gaussian blur with edge replication."""
    if sigma <= 0:
        return image.astype(np.float32, copy=True)
    radius = max(1, round(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = image.astype(np.float32)
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], "edge")
        acc = np.zeros_like(out)
        length = out.shape[axis]
        for k, tap in enumerate(taps):
            window = padded[k : k + length] if axis == 0 else padded[:, k : k + length]
            acc += np.float32(tap) * window
        out = acc
    return out


def erode(mask: BoolImage, iterations: int) -> BoolImage:
    """Binary erosion with a 3x3 cross, repeated; pixels beyond the edge count as background."""
    out = mask.copy()
    for _ in range(iterations):
        padded = np.pad(out, 1, constant_values=False)
        out = (
            padded[1:-1, 1:-1]
            & padded[:-2, 1:-1]
            & padded[2:, 1:-1]
            & padded[1:-1, :-2]
            & padded[1:-1, 2:]
        )
    return out


def dilate(mask: BoolImage, iterations: int) -> BoolImage:
    """Binary dilation with a 3x3 cross, repeated."""
    return ~erode(~mask, iterations)


def value_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> FloatImage:
    """Smooth random field in [0, 1] with features about ``cell`` pixels across.

    Random values on a coarse lattice, interpolated with a smoothstep so the field has no
    visible lattice creases.
    """
    height, width = shape
    rows = int(np.ceil(height / cell)) + 2
    cols = int(np.ceil(width / cell)) + 2
    lattice = rng.random((rows, cols))
    gy = np.arange(height) / cell
    gx = np.arange(width) / cell
    y0 = np.floor(gy).astype(np.intp)
    x0 = np.floor(gx).astype(np.intp)
    ty = gy - y0
    tx = gx - x0
    sy = (ty * ty * (3 - 2 * ty))[:, None]
    sx = (tx * tx * (3 - 2 * tx))[None, :]
    a = lattice[y0][:, x0]
    b = lattice[y0][:, x0 + 1]
    c = lattice[y0 + 1][:, x0]
    d = lattice[y0 + 1][:, x0 + 1]
    top = a + (b - a) * sx
    bottom = c + (d - c) * sx
    return (top + (bottom - top) * sy).astype(np.float32)
