"""Deterministic synthetic fingers and their impressions, with true minutiae (SFinGe approach)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.minutiae import Minutia
from hil.fingers.impression import (
    QUALITIES,
    Placement,
    Quality,
    random_placement,
    random_skin,
    render,
    visible_minutiae,
)
from hil.fingers.master import grow_ridges
from hil.fingers.orientation import (
    CLASS_WEIGHTS,
    PATTERN_CLASSES,
    PatternClass,
    Silhouette,
    SingularPoints,
    arch_orientation,
    perturb,
    random_arch,
    random_silhouette,
    random_singular_points,
    ridge_period,
    zero_pole_orientation,
)
from hil.fingers.raster import BoolImage, FloatImage
from hil.fingers.truth import true_minutiae

MASTER_SHAPE = (480, 400)  # rows, cols at 500 ppi: room for a whole fingertip
DEFAULT_PERIOD_RANGE = (8.0, 11.0)  # inter-ridge distance in pixels at 500 ppi
_PERTURBATION = 0.12  # radians of smooth random turn added to the orientation model
_CACHED_MASTERS = 32

# Separate random streams per purpose, so that e.g. the skin drawn for an impression never
# shifts where the finger lay.
_MASTER_STREAM = 0
_PLACEMENT_STREAM = 1
_SKIN_STREAM = 2


@dataclass(frozen=True)
class MasterFinger:
    """A whole fingertip at 500 ppi: the clean ridge pattern and its true minutiae."""

    finger_id: int
    pattern_class: PatternClass
    image: npt.NDArray[np.uint8]  # dark ridges on white, HxW
    mask: BoolImage  # fingertip silhouette
    ridges: FloatImage  # smooth ridge field in [-1, 1], positive on ridges
    orientation: FloatImage  # ridge orientation, radians in [0, pi), ISO sense
    period: FloatImage  # inter-ridge distance in pixels
    singular_points: SingularPoints
    silhouette: Silhouette
    minutiae: list[Minutia]


@dataclass(frozen=True)
class Impression:
    """One capture of a finger: the sensor image and the minutiae truly visible in it."""

    finger_id: int
    impression_id: int
    quality: Quality
    image: npt.NDArray[np.uint8]  # HxW grey, dark ridges on a light background
    foreground: BoolImage  # pixels where the finger touched the sensor
    minutiae: list[Minutia]  # image pixels
    ppi: float
    placement: Placement  # maps between these image pixels and the master's


class FingerGenerator:
    """Synthetic fingers for one ``seed``: the same seed and ids always give the same bytes.

    Masters take about a second each to grow and the most recent ones are cached.
    """

    def __init__(self, seed: int, period_range: tuple[float, float] = DEFAULT_PERIOD_RANGE) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        low, high = period_range
        if not 6.0 <= low <= high <= 14.0:
            raise ValueError(
                f"period_range must satisfy 6 <= low <= high <= 14, got {period_range}"
            )
        self.seed = seed
        self.period_range = period_range
        self._masters: OrderedDict[int, MasterFinger] = OrderedDict()

    def finger(self, finger_id: int) -> MasterFinger:
        """The master print of ``finger_id`` (>= 0)."""
        _check_id("finger_id", finger_id)
        master = self._masters.get(finger_id)
        if master is None:
            master = self._grow(finger_id)
            self._masters[finger_id] = master
            if len(self._masters) > _CACHED_MASTERS:
                self._masters.popitem(last=False)
        else:
            self._masters.move_to_end(finger_id)
        return master

    def impression(
        self,
        finger_id: int,
        impression_id: int,
        width: int = 256,
        height: int = 288,
        ppi: float = 500.0,
        quality: Quality = "good",
    ) -> Impression:
        """Impression ``impression_id`` (>= 0) of ``finger_id`` on a width x height sensor."""
        _check_id("impression_id", impression_id)
        if not (16 <= width <= 2048 and 16 <= height <= 2048):
            raise ValueError(f"image size must be 16..2048 pixels a side, got {width}x{height}")
        if not 250.0 <= ppi <= 1000.0:
            raise ValueError(f"ppi must be within 250..1000, got {ppi}")
        if quality not in QUALITIES:
            raise ValueError(f"quality must be one of {QUALITIES}, got {quality!r}")
        master = self.finger(finger_id)
        size = (width, height)
        placement = random_placement(
            self._rng(finger_id, _PLACEMENT_STREAM, impression_id),
            quality,
            master.silhouette,
            size,
            ppi,
        )
        skin_rng = self._rng(finger_id, _SKIN_STREAM, impression_id, QUALITIES.index(quality))
        skin = random_skin(skin_rng, quality)
        image, contact = render(skin_rng, master.ridges, master.mask, placement, skin, size)
        return Impression(
            finger_id=finger_id,
            impression_id=impression_id,
            quality=quality,
            image=image,
            foreground=contact >= 0.5,
            minutiae=visible_minutiae(master.minutiae, placement, contact),
            ppi=ppi,
            placement=placement,
        )

    def impression_image(
        self,
        finger_id: int,
        impression_id: int,
        width: int = 256,
        height: int = 288,
        ppi: float = 500.0,
        quality: Quality = "good",
    ) -> npt.NDArray[np.uint8]:
        """Just the pixels of :meth:`impression`."""
        return self.impression(finger_id, impression_id, width, height, ppi, quality).image

    def _rng(self, finger_id: int, stream: int, *more: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, finger_id, stream, *more])

    def _grow(self, finger_id: int) -> MasterFinger:
        rng = self._rng(finger_id, _MASTER_STREAM)
        pattern = PATTERN_CLASSES[int(rng.choice(len(PATTERN_CLASSES), p=_weights()))]
        silhouette = random_silhouette(rng, MASTER_SHAPE)
        mask = silhouette.mask(MASTER_SHAPE)
        if pattern == "arch":
            points = SingularPoints((), ())
            theta = arch_orientation(MASTER_SHAPE, random_arch(rng, silhouette))
        else:
            points = random_singular_points(rng, pattern, silhouette)
            theta = zero_pole_orientation(MASTER_SHAPE, points)
        theta = perturb(rng, theta, _PERTURBATION)
        period = ridge_period(rng, MASTER_SHAPE, points, self.period_range)
        ridges = grow_ridges(rng, mask, theta, period)
        image = np.where(mask, np.rint(127.5 - 127.5 * ridges), 255).astype(np.uint8)
        return MasterFinger(
            finger_id=finger_id,
            pattern_class=pattern,
            image=image,
            mask=mask,
            ridges=ridges,
            orientation=theta,
            period=period,
            singular_points=points,
            silhouette=silhouette,
            minutiae=true_minutiae(ridges, mask, theta, period),
        )


def _weights() -> npt.NDArray[np.float64]:
    weights = np.array(CLASS_WEIGHTS, dtype=np.float64)
    normalised: npt.NDArray[np.float64] = weights / weights.sum()
    return normalised


def _check_id(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
