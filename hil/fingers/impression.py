"""One impression of a master finger as an optical live-scan sensor would capture it.

The finger is placed with a displacement and a rotation, touches the platen only in an
elliptical contact region, and the skin is dragged a little towards the rim of that region
(elastic distortion, largest at the rim, none in the middle). Skin condition sets the ridge
thickness: dry skin gives thin, broken ridges, wet skin thick, merged ones. The picture is
rendered with dark ridges on a light, unevenly lit background, then blurred and noised.
True minutiae go through the same geometric mapping and are kept where the contact is visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge.minutiae import Minutia
from hil.fingers.orientation import Silhouette
from hil.fingers.raster import BoolImage, FloatImage, bilinear_sample, gaussian_blur, value_noise

Quality = Literal["good", "poor", "dry", "wet"]
QUALITIES: tuple[Quality, ...] = ("good", "poor", "dry", "wet")
MASTER_PPI = 500.0

Coordinates = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]

_EDGE = 8.0  # pixels over which the contact fades out at its rim
_VISIBLE = 0.5  # contact weight from which ridges are considered visible
_MARGIN = 8.0  # pixels at 500 ppi a kept minutia stays inside the visible region
_SETTLE = 8  # fixed-point iterations inverting the distortion


@dataclass(frozen=True)
class _Conditions:
    """How spread out the placement is and how the skin and sensor render, per quality."""

    shift: float  # master pixels, standard deviation of the displacement
    rotation: float  # degrees, standard deviation
    contact: tuple[float, float]  # contact ellipse size as a fraction of the finger
    drag: tuple[float, float]  # master pixels of distortion at the contact rim
    thickness: tuple[float, float]  # ridge threshold: positive thins ridges, negative thickens
    breaks: float  # share of ridge length broken away (dry skin)
    blots: float  # share of area where valleys fill in (wet skin)
    contrast: tuple[float, float]  # grey levels between background and ridge
    blur: float  # pixels
    noise: float  # grey levels


_CONDITIONS: dict[Quality, _Conditions] = {
    "good": _Conditions(15, 6, (0.85, 1.0), (2, 6), (-0.1, 0.1), 0.02, 0.0, (150, 190), 0.7, 4),
    "poor": _Conditions(30, 12, (0.6, 0.85), (5, 11), (-0.2, 0.3), 0.12, 0.05, (80, 120), 1.3, 11),
    "dry": _Conditions(15, 6, (0.7, 0.95), (2, 6), (0.35, 0.55), 0.3, 0.0, (110, 150), 0.7, 6),
    "wet": _Conditions(15, 6, (0.85, 1.0), (2, 6), (-0.55, -0.35), 0.0, 0.12, (160, 200), 1.0, 5),
}


@dataclass(frozen=True)
class Placement:
    """Geometry of one touch: where the finger lay, how it was turned, and how the skin moved.

    Maps image pixels (at the impression's resolution) to master pixels and back.
    """

    image_centre: tuple[float, float]
    master_centre: tuple[float, float]  # master point under the image centre
    rotation: float  # radians; the print appears turned clockwise on screen by this much
    scale: float  # master pixels per image pixel
    contact_centre: tuple[float, float]  # master pixels
    contact_axes: tuple[float, float]  # half axes along x and y, master pixels
    drag: tuple[float, float]  # master pixels at the contact rim
    ripple: tuple[tuple[float, float, float, float], ...]  # (amplitude, kx, ky, phase) x, y
    lobes: tuple[tuple[float, float], ...]  # (relative amplitude, phase) of rim harmonics 2, 3..

    def to_master(self, ux: npt.NDArray[np.float64], uy: npt.NDArray[np.float64]) -> Coordinates:
        """Master position seen at image pixel (ux, uy)."""
        ax, ay = self._rigid(ux, uy)
        dx, dy = self._distortion(ax, ay)
        return ax + dx, ay + dy

    def to_image(self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> Coordinates:
        """Image pixel where master position (x, y) appears."""
        ax, ay = x, y
        # The distortion is small and smooth (gradient well below 1), so this fixed point
        # iteration contracts quickly.
        for _ in range(_SETTLE):
            dx, dy = self._distortion(ax, ay)
            ax, ay = x - dx, y - dy
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        vx = (ax - self.master_centre[0]) / self.scale
        vy = (ay - self.master_centre[1]) / self.scale
        return (
            self.image_centre[0] + cos * vx - sin * vy,
            self.image_centre[1] + sin * vx + cos * vy,
        )

    def contact_radius(
        self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Distance of master position (x, y) from the contact centre, 1 on the (lobed) rim."""
        ex = (x - self.contact_centre[0]) / self.contact_axes[0]
        ey = (y - self.contact_centre[1]) / self.contact_axes[1]
        bearing = np.arctan2(ey, ex)
        rim = 1.0 + sum(
            amplitude * np.cos((order + 2) * bearing + phase)
            for order, (amplitude, phase) in enumerate(self.lobes)
        )
        radius: npt.NDArray[np.float64] = np.hypot(ex, ey) / rim
        return radius

    def _rigid(self, ux: npt.NDArray[np.float64], uy: npt.NDArray[np.float64]) -> Coordinates:
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        vx = (ux - self.image_centre[0]) * self.scale
        vy = (uy - self.image_centre[1]) * self.scale
        return (
            self.master_centre[0] + cos * vx + sin * vy,
            self.master_centre[1] - sin * vx + cos * vy,
        )

    def _distortion(self, ax: npt.NDArray[np.float64], ay: npt.NDArray[np.float64]) -> Coordinates:
        # Skin in the middle of the contact sticks to the platen; towards the rim it has been
        # dragged, by a common pull plus a gentle ripple.
        t = np.clip((self.contact_radius(ax, ay) - 0.3) / 0.7, 0.0, 1.0)
        weight = t * t * (3 - 2 * t)
        (a1, kx1, ky1, p1), (a2, kx2, ky2, p2) = self.ripple
        dx = self.drag[0] + a1 * np.sin(kx1 * ax + ky1 * ay + p1)
        dy = self.drag[1] + a2 * np.sin(kx2 * ax + ky2 * ay + p2)
        return weight * dx, weight * dy


@dataclass(frozen=True)
class Skin:
    """Skin and sensor rendering of one impression."""

    thickness: float
    breaks: float
    blots: float
    contrast: float
    valley_drop: float
    background: float
    lighting: tuple[float, float]  # grey-level slope across x and y, per image width
    blur: float
    noise: float


def random_placement(
    rng: np.random.Generator,
    quality: Quality,
    finger: Silhouette,
    size: tuple[int, int],
    ppi: float,
) -> Placement:
    """A touch of ``finger`` on a sensor of ``size`` (width, height) pixels at ``ppi``.

    The random draws do not depend on ``quality``, only their spread does, so impressions with
    the same ids but different qualities lie on the sensor alike.
    """
    c = _CONDITIONS[quality]
    shift = rng.standard_normal(2).clip(-2.5, 2.5) * c.shift
    turn = math.radians(float(np.clip(rng.standard_normal(), -2.5, 2.5)) * c.rotation)
    contact_size = c.contact[0] + (c.contact[1] - c.contact[0]) * rng.random()
    contact_shift = rng.standard_normal(2).clip(-2.5, 2.5)
    drag_size = c.drag[0] + (c.drag[1] - c.drag[0]) * rng.random()
    drag_angle = rng.uniform(0.0, 2 * math.pi)
    ripple = tuple(
        (
            0.3 * drag_size,
            float(rng.uniform(-1, 1)) * 2 * math.pi / 200.0,
            float(rng.uniform(-1, 1)) * 2 * math.pi / 200.0,
            float(rng.uniform(0, 2 * math.pi)),
        )
        for _ in range(2)
    )
    lobes = tuple(
        (float(rng.uniform(0.0, 0.06)) / (order + 1), float(rng.uniform(0, 2 * math.pi)))
        for order in range(4)
    )
    height_axis = (finger.top + finger.bottom) / 2
    # Partial contacts leave the finger towards a random side, not always around its middle.
    spare = 1.0 - contact_size
    return Placement(
        image_centre=((size[0] - 1) / 2, (size[1] - 1) / 2),
        master_centre=(finger.cx + shift[0], finger.cy + 15.0 + shift[1]),
        rotation=turn,
        scale=MASTER_PPI / ppi,
        contact_centre=(
            finger.cx + contact_shift[0] * spare * finger.half_width * 0.4,
            finger.cy + 15.0 + contact_shift[1] * spare * height_axis * 0.4,
        ),
        contact_axes=(contact_size * finger.half_width, contact_size * height_axis),
        drag=(drag_size * math.cos(drag_angle), drag_size * math.sin(drag_angle)),
        ripple=ripple,
        lobes=lobes,
    )


def random_skin(rng: np.random.Generator, quality: Quality) -> Skin:
    """Skin condition and sensor response for ``quality``."""
    c = _CONDITIONS[quality]
    contrast = rng.uniform(*c.contrast)
    return Skin(
        thickness=rng.uniform(*c.thickness),
        breaks=c.breaks,
        blots=c.blots,
        contrast=contrast,
        valley_drop=contrast * rng.uniform(0.08, 0.2),
        background=rng.uniform(215.0, 240.0),
        lighting=(rng.uniform(-12.0, 12.0), rng.uniform(-12.0, 12.0)),
        blur=c.blur,
        noise=c.noise,
    )


def render(
    rng: np.random.Generator,
    ridges: FloatImage,
    mask: BoolImage,
    placement: Placement,
    skin: Skin,
    size: tuple[int, int],
) -> tuple[npt.NDArray[np.uint8], FloatImage]:
    """The grey image (dark ridges) and the contact weight of every image pixel."""
    width, height = size
    shape = (height, width)
    uy, ux = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = placement.to_master(ux, uy)
    scale = 1.0 / placement.scale
    rho = placement.contact_radius(x, y)
    reach = min(placement.contact_axes) / _EDGE
    rim = np.clip((1.0 - rho) * reach, 0.0, 1.0)
    finger = bilinear_sample(mask.astype(np.float32), x, y, 0.0)
    contact = (rim * rim * (3 - 2 * rim) * finger).astype(np.float32)
    ridge = bilinear_sample(ridges, x, y, -1.0)
    # Ridges thin out towards the rim, where the skin presses less, and vary a little anyway.
    threshold = (
        skin.thickness
        + 0.5 * np.clip(rho, 0.0, 1.0) ** 4
        + 0.3 * (value_noise(rng, shape, 30.0 * scale) - 0.5)
    )
    ink = np.clip(0.5 + (ridge - threshold) / 0.7, 0.0, 1.0)
    # Pores and skin texture keep ridges from printing as flat black.
    ink *= 1.0 - 0.3 * value_noise(rng, shape, 3.0 * scale)
    if skin.breaks > 0:
        ink *= 1.0 - 0.85 * _speckle(rng, shape, 5.0 * scale, skin.breaks)
    if skin.blots > 0:
        ink = np.maximum(ink, 0.8 * _speckle(rng, shape, 9.0 * scale, skin.blots))
    strength = contact * (0.8 + 0.4 * value_noise(rng, shape, 60.0 * scale))
    grey = (
        skin.background
        + skin.lighting[0] * (ux / width - 0.5)
        + skin.lighting[1] * (uy / height - 0.5)
        + 12.0 * (value_noise(rng, shape, 90.0) - 0.5)
    ).astype(np.float32)
    grey -= strength * (skin.valley_drop + (skin.contrast - skin.valley_drop) * ink)
    grey = gaussian_blur(grey, skin.blur * scale)
    grey += rng.standard_normal(grey.shape).astype(np.float32) * np.float32(skin.noise)
    image: npt.NDArray[np.uint8] = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return image, contact


def visible_minutiae(
    minutiae: list[Minutia],
    placement: Placement,
    contact: FloatImage,
) -> list[Minutia]:
    """``minutiae`` (master pixels) as they appear in the image, where the contact shows them."""
    if not minutiae:
        return []
    x = np.array([m.x for m in minutiae], dtype=np.float64)
    y = np.array([m.y for m in minutiae], dtype=np.float64)
    radians = np.radians([m.angle for m in minutiae])
    step = 4.0
    ux, uy = placement.to_image(x, y)
    tx, ty = placement.to_image(x + step * np.cos(radians), y - step * np.sin(radians))
    angles = np.degrees(np.arctan2(-(ty - uy), tx - ux)) % 360.0
    margin = _MARGIN / placement.scale
    kept = []
    for k, minutia in enumerate(minutiae):
        if _inside(contact, float(ux[k]), float(uy[k]), margin):
            kept.append(
                Minutia(
                    x=float(ux[k]),
                    y=float(uy[k]),
                    angle=float(angles[k]) % 360.0,
                    kind=minutia.kind,
                    quality=minutia.quality,
                )
            )
    return kept


def _inside(contact: FloatImage, x: float, y: float, margin: float) -> bool:
    """Whether (x, y) and a ring of points ``margin`` around it are all within visible contact."""
    height, width = contact.shape
    for k in range(9):
        px = x + (margin * math.cos(k * math.pi / 4) if k else 0.0)
        py = y + (margin * math.sin(k * math.pi / 4) if k else 0.0)
        col, row = round(px), round(py)
        if not (0 <= col < width and 0 <= row < height) or contact[row, col] < _VISIBLE:
            return False
    return True


def _speckle(
    rng: np.random.Generator, shape: tuple[int, int], cell: float, share: float
) -> FloatImage:
    """Soft random spots covering about ``share`` of the area."""
    field = value_noise(rng, shape, cell)
    cut = float(np.quantile(field, 1.0 - share))
    spots: FloatImage = np.clip((field - cut) / 0.08, 0.0, 1.0).astype(np.float32)
    return spots
