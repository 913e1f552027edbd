"""Shape, ridge orientation and ridge period of a synthetic finger (the SFinGe first steps).

Angles follow ISO/IEC 19794-2: radians counter-clockwise from +x as seen on screen, with image
rows growing downwards, so a direction ``a`` is the pixel vector ``(cos a, -sin a)``. A ridge
orientation is an angle modulo pi.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from hil.fingers.raster import BoolImage, FloatImage, value_noise

PatternClass = Literal["arch", "tented_arch", "left_loop", "right_loop", "whorl"]
PATTERN_CLASSES: tuple[PatternClass, ...] = (
    "arch",
    "tented_arch",
    "left_loop",
    "right_loop",
    "whorl",
)
# Natural class frequencies reported for large fingerprint collections (the SFinGe defaults).
CLASS_WEIGHTS: tuple[float, ...] = (0.037, 0.029, 0.317, 0.338, 0.279)

Point = tuple[float, float]


@dataclass(frozen=True)
class Silhouette:
    """Fingertip outline: an upper half-ellipse on a squarer lower half, centred at (cx, cy)."""

    cx: float
    cy: float
    half_width: float
    top: float
    bottom: float

    def mask(self, shape: tuple[int, int]) -> BoolImage:
        """Foreground pixels of a canvas of ``shape`` (rows, cols)."""
        ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
        u = np.abs(xs - self.cx) / self.half_width
        above = ys < self.cy
        v = np.where(above, (self.cy - ys) / self.top, (ys - self.cy) / self.bottom)
        # Exponent 2 gives the rounded tip, 3 the fuller base towards the first joint.
        inside: BoolImage = np.where(above, u**2 + v**2, u**3 + v**3) <= 1.0
        return inside


@dataclass(frozen=True)
class SingularPoints:
    """Cores and deltas in canvas pixels (x, y), y down."""

    cores: tuple[Point, ...]
    deltas: tuple[Point, ...]


@dataclass(frozen=True)
class ArchShape:
    """Ridge hump of an arch: ridges rise by ``height`` pixels over a bump ``spread`` wide."""

    cx: float
    cy: float
    height: float
    spread: float
    extent: float


def random_silhouette(rng: np.random.Generator, shape: tuple[int, int]) -> Silhouette:
    """A plausible fingertip outline (about 15 x 19 mm at 500 ppi) centred on the canvas."""
    rows, cols = shape
    top = rng.uniform(150.0, 175.0)
    return Silhouette(
        cx=cols / 2 + rng.uniform(-8.0, 8.0),
        cy=rows * 0.1 + top,
        half_width=rng.uniform(135.0, 158.0),
        top=top,
        bottom=rng.uniform(175.0, 200.0),
    )


def random_singular_points(
    rng: np.random.Generator, pattern: PatternClass, finger: Silhouette
) -> SingularPoints:
    """Cores and deltas placed where they sit on real fingers of ``pattern``."""
    cx = finger.cx + rng.uniform(-15.0, 15.0)
    cy = finger.cy - rng.uniform(0.0, 40.0)
    if pattern == "arch":
        return SingularPoints((), ())
    if pattern == "tented_arch":
        return SingularPoints(
            ((cx, cy),), ((cx + rng.uniform(-6.0, 6.0), cy + rng.uniform(45.0, 70.0)),)
        )
    if pattern in ("left_loop", "right_loop"):
        # A loop opens towards the side its name gives; its delta lies on the other side.
        side = -1.0 if pattern == "right_loop" else 1.0
        core_x = cx - side * rng.uniform(0.0, 25.0)
        delta = (core_x + side * rng.uniform(70.0, 110.0), cy + rng.uniform(85.0, 125.0))
        return SingularPoints(((core_x, cy),), (delta,))
    gap = rng.uniform(18.0, 45.0)
    tilt = rng.uniform(-12.0, 12.0)
    drop = cy + rng.uniform(90.0, 125.0)
    return SingularPoints(
        ((cx - tilt / 2, cy - gap / 2), (cx + tilt / 2, cy + gap / 2)),
        (
            (cx - rng.uniform(85.0, 120.0), drop + rng.uniform(-15.0, 15.0)),
            (cx + rng.uniform(85.0, 120.0), drop + rng.uniform(-15.0, 15.0)),
        ),
    )


def random_arch(rng: np.random.Generator, finger: Silhouette) -> ArchShape:
    """Hump parameters of a plain arch."""
    return ArchShape(
        cx=finger.cx + rng.uniform(-20.0, 20.0),
        cy=finger.cy + rng.uniform(-10.0, 40.0),
        height=rng.uniform(70.0, 120.0),
        spread=rng.uniform(55.0, 80.0),
        extent=rng.uniform(110.0, 160.0),
    )


def zero_pole_orientation(
    shape: tuple[int, int], points: SingularPoints, background: float = 0.0
) -> FloatImage:
    """Sherlock-Monro zero-pole orientation: each core turns the field by +1/2, each delta -1/2.

    Positions are pixels with y down; the angles are taken in the upright (y up) frame so a core
    has Poincare index +1/2 and a delta -1/2 when walked counter-clockwise on screen.
    """
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    theta = np.full(shape, background, dtype=np.float64)
    for x, y in points.cores:
        theta += 0.5 * np.arctan2(-(ys - y), xs - x)
    for x, y in points.deltas:
        theta -= 0.5 * np.arctan2(-(ys - y), xs - x)
    return np.mod(theta, np.pi).astype(np.float32)


def arch_orientation(shape: tuple[int, int], arch: ArchShape) -> FloatImage:
    """Orientation of ridges y = y0 - h(y0) exp(-(x-cx)^2 / 2s^2): flat with a central hump."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    dx = xs - arch.cx
    height = arch.height * np.exp(-(((ys - arch.cy) / arch.extent) ** 2))
    # Upright-frame slope of the hump: rising left of the centre, falling right of it.
    slope = -height * dx / arch.spread**2 * np.exp(-0.5 * (dx / arch.spread) ** 2)
    theta: FloatImage = np.mod(np.arctan(slope), np.pi).astype(np.float32)
    return theta


def perturb(rng: np.random.Generator, theta: FloatImage, amplitude: float) -> FloatImage:
    """Add a smooth random turn of at most ``amplitude`` radians; singular points stay put."""
    shape = (int(theta.shape[0]), int(theta.shape[1]))
    wobble = (value_noise(rng, shape, 140.0) - 0.5) + 0.5 * (value_noise(rng, shape, 70.0) - 0.5)
    return np.mod(theta + np.float32(amplitude * 4 / 3) * wobble, np.float32(np.pi)).astype(
        np.float32
    )


def ridge_period(
    rng: np.random.Generator,
    shape: tuple[int, int],
    points: SingularPoints,
    period_range: tuple[float, float],
) -> FloatImage:
    """Inter-ridge distance in pixels, smoothly varying within ``period_range``.

    Following SFinGe, ridges are sparser (lower frequency) above the upper core and below the
    lower delta than in the rest of the print.
    """
    low, high = period_range
    span = high - low
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    base = low + span * rng.uniform(0.25, 0.55)
    period = base + span * (
        0.45 * (value_noise(rng, shape, 160.0) - 0.5)
        + 0.3 * (value_noise(rng, shape, 60.0) - 0.5)
        + 0.25 * (value_noise(rng, shape, 30.0) - 0.5)
    )
    period = np.broadcast_to(period, shape).astype(np.float32)
    if points.cores:
        top = min(y for _, y in points.cores)
        period = period + np.float32(0.3 * span) * _ramp(top - 30.0 - rows, 80.0)
    if points.deltas:
        bottom = max(y for _, y in points.deltas)
        period = period + np.float32(0.3 * span) * _ramp(rows - bottom - 20.0, 80.0)
    clipped: FloatImage = np.clip(period, low, high).astype(np.float32)
    return clipped


def _ramp(distance: npt.NDArray[np.float32], width: float) -> npt.NDArray[np.float32]:
    """0 before ``distance`` turns positive, rising smoothly to 1 over ``width`` pixels."""
    t = np.clip(distance / width, 0.0, 1.0)
    smooth: npt.NDArray[np.float32] = (t * t * (3 - 2 * t)).astype(np.float32)
    return smooth
