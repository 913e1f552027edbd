"""Minutiae as the pipeline passes them between extraction, templates and matching."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MinutiaKind(enum.IntEnum):
    """ISO/IEC 19794-2 minutia type codes."""

    OTHER = 0
    ENDING = 1
    BIFURCATION = 2


@dataclass(frozen=True)
class Minutia:
    """One minutia in image pixels.

    Origin top-left, y down. ``angle`` is in degrees [0, 360), counted counter-clockwise from the
    +x axis as seen on screen (the ISO/IEC 19794-2 convention); for a ridge ending it points
    along the ridge, away from the ending, into the ridge.
    """

    x: float
    y: float
    angle: float
    kind: MinutiaKind
    quality: int  # 0..100
