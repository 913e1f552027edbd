"""True minutiae of a master print, read off its ridge and valley skeletons.

Placement and direction follow ISO/IEC 19794-2:2005 (and ANSI/NIST-ITL's three-ray rule):

* a ridge ending sits where the valley skeleton forks in front of the ridge; its direction
  points along the ridge, away from the ending, into the ridge;
* a bifurcation sits where the ridge skeleton forks; its direction points along the valley
  that separates the two branches, away from the fork, i.e. opposite to the single stem.

Each minutia is seen twice, once in each skeleton: a ridge ending is a ridge-skeleton end and a
valley-skeleton fork, a bifurcation is a ridge-skeleton fork and a valley-skeleton end. Only
minutiae confirmed by both skeletons are kept, which removes the odd thinning artefact. The end
gives the sense of the direction (walking from it along its own skeleton); the orientation
field gives the precise angle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.minutiae import Minutia, MinutiaKind
from hil.fingers.raster import BoolImage, FloatImage, erode
from hil.fingers.thinning import crossing_number, thin, walk

TRUE_QUALITY = 100
_PAIR_REACH = 1.25  # periods between the two sightings of one minutia
_SPUR = 1.0  # periods: a line shorter than this between an end and a fork is noise
_CLOSE = 0.6  # periods: two minutiae closer than this are one defect, not two minutiae
_BORDER = 1.5  # periods kept clear of the outline


@dataclass(frozen=True)
class _Skeleton:
    lines: BoolImage
    crossings: npt.NDArray[np.uint8]

    @classmethod
    def of(cls, binary: BoolImage) -> _Skeleton:
        lines = thin(binary)
        return cls(lines, crossing_number(lines))

    def points(self, crossing: int) -> list[tuple[int, int]]:
        if crossing >= 3:
            rows, cols = np.nonzero(self.crossings >= 3)
        else:
            rows, cols = np.nonzero(self.crossings == crossing)
        return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True)]


def true_minutiae(
    ridges: FloatImage, mask: BoolImage, theta: FloatImage, period: FloatImage
) -> list[Minutia]:
    """Minutiae of the clean ridge pattern ``ridges`` (> 0 on ridges) inside ``mask``."""
    ridge = _Skeleton.of((ridges > 0) & mask)
    valley = _Skeleton.of((ridges <= 0) & mask)
    typical = float(np.median(period[mask]))
    interior = erode(mask, round(_BORDER * typical))
    found: list[tuple[float, float, float, MinutiaKind]] = []
    for kind, at_fork, at_end in (
        (MinutiaKind.ENDING, valley, ridge),
        (MinutiaKind.BIFURCATION, ridge, valley),
    ):
        ends = [p for p in at_end.points(1) if not _is_spur(at_end, p, period)]
        forks = [p for p in at_fork.points(3) if interior[p]]
        for fork, end in _pairs(forks, ends, period):
            (row, col), steps, _ = walk(at_end.lines, at_end.crossings, end, round(period[end]))
            if steps == 0:
                continue
            found.append(
                (
                    float(fork[1]),
                    float(fork[0]),
                    _angle(theta[fork], col - end[1], row - end[0]),
                    kind,
                )
            )
    return [
        Minutia(x=x, y=y, angle=a, kind=k, quality=TRUE_QUALITY)
        for x, y, a, k in _drop_close(found, typical)
    ]


def _is_spur(skeleton: _Skeleton, end: tuple[int, int], period: FloatImage) -> bool:
    """An end whose line reaches another end or a fork within a period is noise, not a ridge."""
    reach = round(_SPUR * float(period[end]))
    _, _, stopped = walk(skeleton.lines, skeleton.crossings, end, reach)
    return stopped


def _pairs(
    forks: list[tuple[int, int]], ends: list[tuple[int, int]], period: FloatImage
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Forks matched one-to-one with their nearest end within reach, closest pairs first."""
    if not forks or not ends:
        return []
    f = np.array(forks, dtype=np.float64)
    e = np.array(ends, dtype=np.float64)
    distance = np.hypot(f[:, None, 0] - e[None, :, 0], f[:, None, 1] - e[None, :, 1])
    reach = _PAIR_REACH * period[f[:, 0].astype(np.intp), f[:, 1].astype(np.intp)]
    candidates = np.argwhere(distance <= reach[:, None])
    order = np.argsort(distance[candidates[:, 0], candidates[:, 1]], kind="stable")
    used_forks: set[int] = set()
    used_ends: set[int] = set()
    pairs = []
    for i, j in candidates[order]:
        if i in used_forks or j in used_ends:
            continue
        used_forks.add(int(i))
        used_ends.add(int(j))
        pairs.append((forks[i], ends[j]))
    return pairs


def _angle(orientation: float, dx: float, dy: float) -> float:
    """ISO angle in degrees: the field's orientation, turned to agree with pixel step (dx, dy)."""
    angle = float(orientation)
    if math.cos(angle) * dx - math.sin(angle) * dy < 0:
        angle += math.pi
    return math.degrees(angle) % 360.0


def _drop_close(
    found: list[tuple[float, float, float, MinutiaKind]], typical: float
) -> list[tuple[float, float, float, MinutiaKind]]:
    """Remove every minutia that has another one closer than a fraction of a ridge period."""
    if len(found) < 2:
        return found
    xy = np.array([(x, y) for x, y, _, _ in found])
    distance = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    np.fill_diagonal(distance, np.inf)
    crowded = (distance < _CLOSE * typical).any(axis=1)
    return [m for m, drop in zip(found, crowded, strict=True) if not drop]
