"""Master fingerprint: ridges grown from a few seeds by iterated, locally tuned Gabor filtering.

Each iteration filters the whole picture with the even Gabor filter tuned to every pixel's
ridge orientation and period, amplifies and clips to [-1, 1]. Seeds spread into ridges that
follow the field; where growth fronts of different phase meet, minutiae appear, as in SFinGe.
Positive values are ridges.
"""

from __future__ import annotations

import math

import numpy as np

from hil.fingers.raster import BoolImage, FloatImage, dilate

_SUPPORT_SIGMAS = 1.5  # filter radius in envelope widths; less compresses long periods
_SIGMA_PER_PERIOD = 0.4
_GAIN = 3.0
_SETTLED = 0.01  # mean change per iteration below which the pattern counts as settled
_MAX_ITERATIONS = 60


class LocalGabor:
    """Even Gabor filter whose orientation and frequency change from pixel to pixel.

    Weights are precomputed per pixel for half of the (point-symmetric) support, so one
    application costs one multiply-add per offset pair.
    """

    def __init__(self, theta: FloatImage, period: FloatImage) -> None:
        self._shape = (int(theta.shape[0]), int(theta.shape[1]))
        # Normal to the ridge in pixel coordinates (x right, y down) for ISO angle theta.
        normal_x = np.sin(theta).astype(np.float32)
        normal_y = np.cos(theta).astype(np.float32)
        omega = (2 * np.pi / period).astype(np.float32)
        inv_two_var = (0.5 / (_SIGMA_PER_PERIOD * period) ** 2).astype(np.float32)
        self.radius = math.ceil(_SUPPORT_SIGMAS * _SIGMA_PER_PERIOD * float(period.max()))
        reach = self.radius
        self._offsets = [
            (dy, dx)
            for dy in range(0, reach + 1)
            for dx in range(-reach, reach + 1)
            if (dy > 0 or dx > 0) and dy * dy + dx * dx <= reach * reach
        ]
        self._weights = np.empty((len(self._offsets), *self._shape), dtype=np.float32)
        envelope_sum = np.ones(self._shape, dtype=np.float32)
        cosine_sum = np.ones(self._shape, dtype=np.float32)
        for k, (dy, dx) in enumerate(self._offsets):
            envelope = np.exp(-np.float32(dx * dx + dy * dy) * inv_two_var)
            wave = np.cos(omega * (dx * normal_x + dy * normal_y))
            self._weights[k] = envelope * wave
            envelope_sum += 2 * envelope
            cosine_sum += 2 * self._weights[k]
        # Remove the DC response so flat regions do not grow into uniform blobs.
        dc = cosine_sum / envelope_sum
        self._centre = 1.0 - dc
        norm = np.abs(self._centre)
        for k, (dy, dx) in enumerate(self._offsets):
            # Recomputed rather than kept: storing every envelope would double peak memory.
            self._weights[k] -= np.exp(-np.float32(dx * dx + dy * dy) * inv_two_var) * dc
            norm += 2 * np.abs(self._weights[k])
        self._inverse_norm = (1.0 / norm).astype(np.float32)

    def apply(self, image: FloatImage) -> FloatImage:
        """Filter response divided by the filter's absolute weight sum (so within [-1, 1])."""
        rows, cols = self._shape
        r = self.radius
        padded = np.pad(image, r)
        out = self._centre * image
        pair = np.empty(self._shape, dtype=np.float32)
        for k, (dy, dx) in enumerate(self._offsets):
            np.add(
                padded[r + dy : r + dy + rows, r + dx : r + dx + cols],
                padded[r - dy : r - dy + rows, r - dx : r - dx + cols],
                out=pair,
            )
            pair *= self._weights[k]
            out += pair
        out *= self._inverse_norm
        return out


def grow_ridges(
    rng: np.random.Generator, mask: BoolImage, theta: FloatImage, period: FloatImage
) -> FloatImage:
    """Grow a ridge pattern over ``mask`` from a few random seeds; returns values in [-1, 1].

    The result is the last filter response before clipping, so ridge profiles are smooth and a
    threshold other than zero makes ridges thicker or thinner (used for skin conditions).
    """
    gabor = LocalGabor(theta, period)
    # Grow a little beyond the outline so the filter sees no artificial edge inside it.
    region = dilate(mask, gabor.radius).astype(np.float32)
    image = np.zeros(mask.shape, dtype=np.float32)
    ys, xs = np.nonzero(mask)
    for index in rng.choice(ys.size, size=int(rng.integers(15, 50)), replace=False):
        image[ys[index], xs[index]] = 1.0
    response = image
    for _ in range(_MAX_ITERATIONS):
        response = gabor.apply(image)
        grown = np.clip(np.float32(_GAIN) * response, -1.0, 1.0)
        grown *= region
        change = float(np.abs(grown - image)[mask].mean())
        image = grown
        # Once everything is reached, defects only creep; stop before they drift far.
        if change < _SETTLED and np.all(image[mask] != 0.0):
            break
    smooth: FloatImage = np.clip(np.float32(_GAIN / 2) * response, -1.0, 1.0) * region
    return smooth.astype(np.float32)
