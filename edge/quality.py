"""Quality gate: is this image worth extracting and sending, and if not, why not.

Measured on 16 x 16 blocks at the sensor's resolution: a block is foreground when its grey
levels vary (ridges and valleys); contrast is the spread of grey levels inside the foreground.
The thresholds follow NFIQ 2's actionable feedback in spirit (uniform image, low contrast, too
little foreground) with values tuned for plain live-scan captures.
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
    FEW_MINUTIAE = "too few minutiae found"


@dataclass(frozen=True)
class QualityReport:
    score: int  # 0..100, carried on the wire
    foreground_fraction: float
    contrast: float
    rejection: Rejection | None

    @property
    def accepted(self) -> bool:
        return self.rejection is None


def _block_view(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    h = pixels.shape[0] // BLOCK * BLOCK
    w = pixels.shape[1] // BLOCK * BLOCK
    blocks = pixels[:h, :w].astype(np.float32).reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK)
    return blocks.transpose(0, 2, 1, 3).reshape(h // BLOCK, w // BLOCK, BLOCK * BLOCK)


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
    else:
        contrast = float(np.percentile(pixels, 95) - np.percentile(pixels, 5))

    score = round(100 * min(1.0, fraction / 0.6) * min(1.0, contrast / 100.0))
    rejection: Rejection | None = None
    if float(pixels.std()) < 1.0 or not foreground.any():
        rejection = Rejection.BLANK
    elif fraction < config.min_foreground_fraction:
        rejection = Rejection.SMALL_AREA
    elif contrast < config.min_contrast:
        rejection = Rejection.LOW_CONTRAST
    return QualityReport(score, fraction, contrast, rejection)


def with_minutiae_check(report: QualityReport, count: int, config: QualityConfig) -> QualityReport:
    """Apply the gate that needs extraction first: enough minutiae to be matchable."""
    if report.accepted and count < config.min_minutiae:
        return QualityReport(report.score, report.foreground_fraction, report.contrast,
                             Rejection.FEW_MINUTIAE)
    return report
