"""Quality gate: is this image worth extracting and sending, and if not, why not.

Measured on 16 x 16 blocks at the sensor's resolution: a block is foreground when its grey
levels vary; contrast is the spread of grey levels inside the foreground; ridge clarity is the
median orientation coherence of the foreground blocks (1 for perfectly parallel ridges, near 0
for noise or smudge), from the gradient structure tensor. The thresholds follow NFIQ 2's
actionable feedback in spirit (uniform image, low contrast, too little foreground).

The score (0..100, carried on the wire) is foreground area times ridge clarity, each mapped to
0..1: ``min(1, area / 0.6) * clip((clarity - 0.1) / 0.6, 0, 1)``. On FVC2002's real prints the
median clarity is 0.43 (capacitive DB3) to 0.68 (optical DB1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.config import QualityConfig

BLOCK = 16
# A block whose grey-level standard deviation is below this is background or smudge.
FOREGROUND_BLOCK_STD = 5.0


class Rejection(enum.Enum):
    """Why a capture was turned down; the value is what the operator and the log see."""

    BLANK = "blank image: nothing on the sensor"
    SMALL_AREA = "too little finger on the sensor"
    LOW_CONTRAST = "ridges too faint: press firmer or clean the platen"
    UNCLEAR = "no clear ridges: clean the platen and place the finger again"
    FEW_MINUTIAE = "too few minutiae found"


@dataclass(frozen=True)
class QualityReport:
    score: int  # 0..100, carried on the wire
    foreground_fraction: float
    contrast: float
    clarity: float
    rejection: Rejection | None

    @property
    def accepted(self) -> bool:
        return self.rejection is None


def _block_view(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    h = pixels.shape[0] // BLOCK * BLOCK
    w = pixels.shape[1] // BLOCK * BLOCK
    blocks = pixels[:h, :w].astype(np.float32).reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK)
    return blocks.transpose(0, 2, 1, 3).reshape(h // BLOCK, w // BLOCK, BLOCK * BLOCK)


def _block_coherence(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    values = pixels.astype(np.float32)
    # Central differences, as np.gradient, written out so the types stay arrays.
    gx = np.zeros_like(values)
    gy = np.zeros_like(values)
    gx[:, 1:-1] = (values[:, 2:] - values[:, :-2]) / 2
    gy[1:-1, :] = (values[2:, :] - values[:-2, :]) / 2
    h = pixels.shape[0] // BLOCK * BLOCK
    w = pixels.shape[1] // BLOCK * BLOCK

    def block_sum(a: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        summed: npt.NDArray[np.float32] = (
            a[:h, :w].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).sum(axis=(1, 3))
        )
        return summed

    gxx, gyy, gxy = block_sum(gx * gx), block_sum(gy * gy), block_sum(gx * gy)
    coherence: npt.NDArray[np.float32] = np.sqrt((gxx - gyy) ** 2 + 4 * gxy**2) / (
        gxx + gyy + np.float32(1e-6)
    )
    return coherence


def assess(pixels: npt.NDArray[np.uint8], config: QualityConfig) -> QualityReport:
    """Score an image and decide whether it passes the configured gate."""
    if pixels.ndim != 2 or pixels.shape[0] < BLOCK or pixels.shape[1] < BLOCK:
        raise ValueError(f"expected a 2-D grey image of at least {BLOCK} x {BLOCK} pixels")
    blocks = _block_view(pixels)
    stds = blocks.std(axis=2)
    foreground = stds >= FOREGROUND_BLOCK_STD
    fraction = float(foreground.mean())
    if foreground.any():
        fg = blocks[foreground]
        spread = np.percentile(fg, 95, axis=1) - np.percentile(fg, 5, axis=1)
        contrast = float(np.median(spread))
        clarity = float(np.median(_block_coherence(pixels)[foreground]))
    else:
        contrast = float(np.percentile(pixels, 95) - np.percentile(pixels, 5))
        clarity = 0.0

    clarity_term = min(1.0, max(0.0, (clarity - 0.1) / 0.6))
    score = round(100 * min(1.0, fraction / 0.6) * clarity_term)
    rejection: Rejection | None = None
    if float(pixels.std()) < 1.0 or not foreground.any():
        rejection = Rejection.BLANK
    elif fraction < config.min_foreground_fraction:
        rejection = Rejection.SMALL_AREA
    elif contrast < config.min_contrast:
        rejection = Rejection.LOW_CONTRAST
    elif clarity < config.min_ridge_clarity:
        rejection = Rejection.UNCLEAR
    return QualityReport(score, fraction, contrast, clarity, rejection)


def with_minutiae_check(report: QualityReport, count: int, config: QualityConfig) -> QualityReport:
    """Apply the gate that needs extraction first: enough minutiae to be matchable."""
    if report.accepted and count < config.min_minutiae:
        return QualityReport(report.score, report.foreground_fraction, report.contrast,
                             report.clarity, Rejection.FEW_MINUTIAE)
    return report
