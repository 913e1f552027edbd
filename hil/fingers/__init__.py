"""Synthetic fingerprints with true minutiae, after SFinGe (Cappelli, Maio and Maltoni).

``FingerGenerator(seed).finger(i)`` grows master print ``i``; ``.impression(i, j)`` renders its
``j``-th capture as an optical sensor would, with the minutiae visible in it.

Minutiae follow ISO/IEC 19794-2:2005 (see :mod:`hil.fingers.truth`): pixel coordinates with the
origin top-left and y down, angles in degrees counter-clockwise from +x as seen on screen; a
ridge ending lies at the valley-skeleton fork in front of the ridge and points into the ridge,
a bifurcation lies at the ridge-skeleton fork and points between its two branches.
"""

from hil.fingers.generator import (
    DEFAULT_PERIOD_RANGE,
    MASTER_SHAPE,
    FingerGenerator,
    Impression,
    MasterFinger,
)
from hil.fingers.impression import QUALITIES, Placement, Quality
from hil.fingers.orientation import PATTERN_CLASSES, PatternClass, SingularPoints

__all__ = [
    "DEFAULT_PERIOD_RANGE",
    "MASTER_SHAPE",
    "PATTERN_CLASSES",
    "QUALITIES",
    "FingerGenerator",
    "Impression",
    "MasterFinger",
    "PatternClass",
    "Placement",
    "Quality",
    "SingularPoints",
]
