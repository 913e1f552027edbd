"""Minutiae matching with the Minutia Cylinder-Code and relaxation (LSS-R).

Implemented from the description in R. Cappelli, M. Ferrara, D. Maltoni, "Minutia Cylinder-Code:
a new representation and matching technique for fingerprint recognition", IEEE TPAMI 32(12),
2010. Each valid minutia gets a cylinder: a 16 x 16 x 6 grid of cells around it, aligned with its
direction, whose values say how strongly neighbouring minutiae sit at that place with that
relative direction. Two templates are compared cylinder against cylinder (the local similarity
matrix), then the best one-to-one pairs are relaxed by their geometric compatibility with each
other and the most efficient ones are averaged into a score in [0, 1].

One departure from the paper: each neighbour's contribution to a cylinder is weighted by its
quality (0..100, as a fraction), so a doubtful minutia, most often a spurious one, disturbs
its neighbours' cylinders less. A template whose minutiae all have quality 0 carries no
qualities (the corpus labels, records from extractors that do not report any), and its minutiae
weigh alike. Chosen by the verification error on the training databases of the
leave-one-database-out runs (see the model card).

Geometry is done in a right-handed frame (x right, y up) at 500 ppi, with ISO angles (counter-
clockwise as seen on screen). Everything is relative to each minutia's position and direction, so
scores are invariant to translation and to rotations up to MAX_ROTATION (120 degrees) either
way, but not to mirroring: a mirrored print swaps the sides of every cylinder and the sign of
every relative angle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edge.minutiae import Minutia

REFERENCE_PPI = 500.0  # the paper's parameters are for 500 ppi images
MAX_MINUTIAE = 255  # what an ISO/IEC 19794-2 record can hold
_SLICE = 32  # centre minutiae per step while building cylinders

# Cylinder (paper, table of parameters).
RADIUS = 70.0
SPATIAL_CELLS = 16  # NS
DIRECTION_CELLS = 6  # ND
SIGMA_S = 28.0 / 3.0
SIGMA_D = 2.0 * math.pi / 9.0
MU_PSI = 1.0 / 100.0
TAU_PSI = 400.0
HULL_OFFSET = 50.0  # omega: how far outside the minutiae's convex hull cells are still valid
MIN_VALID_FRACTION = 0.75  # minVC, as a fraction of the cells inside the cylinder's circle
MIN_NEIGHBOURS = 2  # minM: neighbours within R + 3 sigma_S for a cylinder to be valid

# Local similarity.
MAX_ROTATION = 2.0 * math.pi / 3.0  # delta_theta
MIN_MATCHABLE_FRACTION = 0.6  # minME, as a fraction of a full cylinder's cells

# Consolidation: how many pairs count (LSS), and relaxation (LSS-R).
MIN_PAIRS, MAX_PAIRS = 4, 12  # minNP, maxNP
MU_PAIRS, TAU_PAIRS = 20.0, 2.0 / 5.0  # muP, tauP
RELAXATION_ROUNDS = 5  # n_rel
RELAXATION_WEIGHT = 0.5  # w_R
MU_RHO = (5.0, math.pi / 12.0, math.pi / 12.0)
TAU_RHO = (-8.0 / 5.0, -30.0, -30.0)

_CELL_SIDE = 2.0 * RADIUS / SPATIAL_CELLS
_CELL_ANGLE = 2.0 * math.pi / DIRECTION_CELLS
_NEIGHBOUR_REACH = 3.0 * SIGMA_S


def _grid() -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Cell-centre offsets in a cylinder's own frame and which of them lie inside its circle."""
    steps = (np.arange(SPATIAL_CELLS) - (SPATIAL_CELLS - 1) / 2.0) * _CELL_SIDE
    along, across = np.meshgrid(steps, steps, indexing="ij")
    offsets = np.stack([along.ravel(), across.ravel()], axis=1)
    return offsets, np.hypot(offsets[:, 0], offsets[:, 1]) <= RADIUS


_OFFSETS, _IN_CIRCLE = _grid()
_CIRCLE_CELLS = int(_IN_CIRCLE.sum())
_CELLS = len(_OFFSETS) * DIRECTION_CELLS
_MIN_VALID_CELLS = MIN_VALID_FRACTION * _CIRCLE_CELLS
_MIN_MATCHABLE = MIN_MATCHABLE_FRACTION * _CIRCLE_CELLS * DIRECTION_CELLS
_CELL_DIRECTIONS = -math.pi + (np.arange(DIRECTION_CELLS) + 0.5) * _CELL_ANGLE


def _sigmoid(value: NDArray[np.float64], mu: float, tau: float) -> NDArray[np.float64]:
    # Clipped so that far-off values saturate to 0 or 1 without an overflow warning.
    result: NDArray[np.float64] = 1.0 / (1.0 + np.exp(np.clip(-tau * (value - mu), -60, 60)))
    return result


def _wrap(angle: NDArray[np.float64]) -> NDArray[np.float64]:
    """Angle difference into [-pi, pi)."""
    wrapped: NDArray[np.float64] = (angle + math.pi) % (2.0 * math.pi) - math.pi
    return wrapped


def _erf(value: NDArray[np.float64]) -> NDArray[np.float64]:
    """Error function (Abramowitz and Stegun 7.1.26, |error| < 1.5e-7); numpy has none."""
    sign = np.sign(value)
    x = np.abs(value)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    result: NDArray[np.float64] = sign * (1.0 - poly * np.exp(-x * x))
    return result


def _convex_hull(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Vertices of the convex hull, counter-clockwise (Andrew's monotone chain)."""
    ordered = sorted(map(tuple, points.tolist()))
    if len(ordered) < 3:
        return np.asarray(ordered, dtype=np.float64).reshape(-1, 2)

    def cross(o: tuple[float, ...], a: tuple[float, ...], b: tuple[float, ...]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def half(sequence: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
        chain: list[tuple[float, ...]] = []
        for p in sequence:
            while len(chain) >= 2 and cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain[:-1]

    return np.asarray(half(ordered) + half(ordered[::-1]), dtype=np.float64)


def _near_hull(points: NDArray[np.float64], hull: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Whether each point lies inside ``hull`` or within HULL_OFFSET of it."""
    starts = hull
    ends = np.roll(hull, -1, axis=0)
    edge = ends - starts  # (h, 2)
    rel = points[:, None, :] - starts[None, :, :]  # (p, h, 2)
    length_sq = np.maximum((edge**2).sum(axis=1), 1e-12)
    along = np.clip((rel * edge[None]).sum(axis=2) / length_sq, 0.0, 1.0)
    nearest = rel - along[..., None] * edge[None]
    distance = np.sqrt((nearest**2).sum(axis=2)).min(axis=1)
    close: NDArray[np.bool_] = distance <= HULL_OFFSET
    if len(hull) < 3:
        return close
    # Counter-clockwise polygon: inside means left of (or on) every edge.
    left = edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0]
    inside = (left >= 0).all(axis=1)
    near: NDArray[np.bool_] = inside | close
    return near


def _spatial(centres: NDArray[np.float64], xy: NDArray[np.float64]) -> NDArray[np.float64]:
    """Gaussian weight of every minutia at every cell centre, 0 beyond 3 sigma_S: (m, cells, n)."""
    flat = centres.reshape(-1, 2)
    distance_sq = (
        (flat**2).sum(axis=1)[:, None] + (xy**2).sum(axis=1)[None, :] - 2.0 * flat @ xy.T
    ).reshape(len(centres), -1, len(xy))
    near = distance_sq <= _NEIGHBOUR_REACH**2
    gauss = np.exp(-distance_sq / (2.0 * SIGMA_S**2)) / (SIGMA_S * math.sqrt(2 * math.pi))
    weight: NDArray[np.float64] = gauss * near
    return weight


def _directional(theta: NDArray[np.float64]) -> NDArray[np.float64]:
    """How much of each neighbour's direction, relative to the centre's, falls in each
    direction cell: a Gaussian integrated over the cell, (n, n, ND)."""
    relative = _wrap(theta[None, :] - theta[:, None])  # neighbour vs centre
    alpha = _wrap(_CELL_DIRECTIONS[None, None, :] - relative[:, :, None])
    spread = SIGMA_D * math.sqrt(2.0)
    integral: NDArray[np.float64] = 0.5 * (
        _erf((alpha + _CELL_ANGLE / 2) / spread) - _erf((alpha - _CELL_ANGLE / 2) / spread)
    )
    return integral


@dataclass(frozen=True)
class MccTemplate:
    """The valid cylinders of one print, ready to compare.

    ``values`` rows are flattened cylinders (zero on invalid cells), ``valid`` their cell masks;
    ``xy`` and ``theta`` are the matching minutiae in the right-handed 500 ppi frame.
    """

    values: NDArray[np.float32]
    valid: NDArray[np.float32]
    xy: NDArray[np.float64]
    theta: NDArray[np.float64]

    @classmethod
    def build(
        cls,
        minutiae: Sequence[Minutia],
        ppi: float = REFERENCE_PPI,
        foreground: NDArray[np.bool_] | None = None,
    ) -> MccTemplate:
        """Cylinders for ``minutiae`` (image pixels at ``ppi``).

        Cells count as valid when they lie on ``foreground`` (a mask in the same image pixels)
        if one is given, otherwise near the minutiae's convex hull.
        """
        if not math.isfinite(ppi) or ppi <= 0:
            raise ValueError(f"ppi must be a positive number, got {ppi}")
        if foreground is not None and foreground.ndim != 2:
            raise ValueError(f"foreground must be a 2-D mask, got shape {foreground.shape}")
        scale = REFERENCE_PPI / ppi
        raw = np.array([(m.x, m.y, m.angle) for m in minutiae], dtype=np.float64).reshape(-1, 3)
        if not np.isfinite(raw).all():
            raise ValueError("minutiae must have finite coordinates and angles")
        quality = np.array([m.quality for m in minutiae], dtype=np.float64)
        if ((quality < 0) | (quality > 100)).any():
            raise ValueError("minutia qualities must lie within 0..100")
        xy = np.stack([raw[:, 0] * scale, -raw[:, 1] * scale], axis=1)
        theta = np.radians(raw[:, 2]) % (2.0 * math.pi)
        count = len(xy)
        if count == 0:
            return cls._empty()
        if count > MAX_MINUTIAE:
            raise ValueError(f"{count} minutiae, more than the {MAX_MINUTIAE} a template may hold")

        cos, sin = np.cos(theta), np.sin(theta)
        rotation = np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], axis=1)
        centres = xy[:, None, :] + np.einsum("nij,cj->nci", rotation, _OFFSETS)  # (n, cells, 2)

        on_print = cls._cells_on_print(centres, xy, scale, foreground)
        cell_valid = on_print & _IN_CIRCLE[None, :]

        directional = _directional(theta)  # (n, n, ND)
        not_self = ~np.eye(count, dtype=bool)
        weight = quality / 100.0 if quality.any() else np.ones(count)
        contributes = not_self * weight[None, :]  # centre x neighbour
        values = np.empty((count, len(_OFFSETS), DIRECTION_CELLS))
        # In slices of centre minutiae: a whole (n, cells, n) array would be 130 MB at n = 255.
        for first in range(0, count, _SLICE):
            part = slice(first, first + _SLICE)
            spatial = _spatial(centres[part], xy) * contributes[part, None, :]
            values[part] = spatial @ directional[part]
        values = _sigmoid(values, MU_PSI, TAU_PSI) * cell_valid[:, :, None]

        pair_distance = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
        neighbours = ((pair_distance <= RADIUS + _NEIGHBOUR_REACH) & not_self).sum(axis=1)
        keep = (cell_valid.sum(axis=1) >= _MIN_VALID_CELLS) & (neighbours >= MIN_NEIGHBOURS)
        mask = np.repeat(cell_valid[keep], DIRECTION_CELLS, axis=1)
        return cls(
            values=values[keep].reshape(int(keep.sum()), _CELLS).astype(np.float32),
            valid=mask.astype(np.float32),
            xy=xy[keep],
            theta=theta[keep],
        )

    @staticmethod
    def _cells_on_print(
        centres: NDArray[np.float64],
        xy: NDArray[np.float64],
        scale: float,
        foreground: NDArray[np.bool_] | None,
    ) -> NDArray[np.bool_]:
        flat = centres.reshape(-1, 2)
        if foreground is None:
            on: NDArray[np.bool_] = _near_hull(flat, _convex_hull(xy))
        else:
            height, width = foreground.shape
            cols = np.rint(flat[:, 0] / scale).astype(np.int64)
            rows = np.rint(-flat[:, 1] / scale).astype(np.int64)
            inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
            on = np.zeros(len(flat), dtype=bool)
            on[inside] = foreground[rows[inside], cols[inside]]
        return on.reshape(centres.shape[:2])

    @classmethod
    def _empty(cls) -> MccTemplate:
        return cls(
            values=np.zeros((0, _CELLS), dtype=np.float32),
            valid=np.zeros((0, _CELLS), dtype=np.float32),
            xy=np.zeros((0, 2)),
            theta=np.zeros(0),
        )

    def __len__(self) -> int:
        return len(self.theta)


def local_similarities(a: MccTemplate, b: MccTemplate) -> NDArray[np.float64]:
    """The local similarity matrix: cylinder of ``a`` (rows) against cylinder of ``b``.

    Only cells valid in both cylinders take part; pairs whose directions differ by more than
    MAX_ROTATION or that share too few cells score 0.
    """
    # |ca - cb|^2 over the common cells, expanded into products so it is four matrix products.
    a_sq = (a.values**2) @ b.valid.T
    b_sq = a.valid @ (b.values**2).T
    cross = a.values @ b.values.T
    common = a.valid @ b.valid.T
    difference = np.sqrt(np.maximum(a_sq + b_sq - 2.0 * cross, 0.0)).astype(np.float64)
    norms = (np.sqrt(a_sq) + np.sqrt(b_sq)).astype(np.float64)
    turn = np.abs(_wrap(a.theta[:, None] - b.theta[None, :]))
    usable = (common >= _MIN_MATCHABLE) & (norms > 0) & (turn <= MAX_ROTATION)
    similarity = np.zeros(norms.shape)
    similarity[usable] = 1.0 - difference[usable] / norms[usable]
    return similarity


def _pair_count(smaller: int) -> int:
    weight = float(_sigmoid(np.array(float(smaller)), MU_PAIRS, TAU_PAIRS))
    return MIN_PAIRS + round(weight * (MAX_PAIRS - MIN_PAIRS))


def _greedy_pairs(similarity: NDArray[np.float64], limit: int) -> tuple[NDArray[np.intp], ...]:
    """Up to ``limit`` one-to-one pairs, best similarity first (ties broken by index)."""
    flat = similarity.ravel()
    positive = np.flatnonzero(flat > 0.0)
    order = positive[np.argsort(-flat[positive], kind="stable")]
    rows_used: set[int] = set()
    cols_used: set[int] = set()
    rows: list[int] = []
    cols: list[int] = []
    width = similarity.shape[1]
    for index in order.tolist():
        if len(rows) == limit:
            break
        r, c = divmod(index, width)
        if r not in rows_used and c not in cols_used:
            rows_used.add(r)
            cols_used.add(c)
            rows.append(r)
            cols.append(c)
    return np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)


def _compatibility(
    a: MccTemplate, b: MccTemplate, rows: NDArray[np.intp], cols: NDArray[np.intp]
) -> NDArray[np.float64]:
    """rho: how well pair t and pair k agree on distance, relative direction and bearing."""

    def geometry(
        xy: NDArray[np.float64], theta: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], ...]:
        gap = xy[None, :, :] - xy[:, None, :]  # from t to k
        distance = np.hypot(gap[..., 0], gap[..., 1])
        turn = _wrap(theta[:, None] - theta[None, :])
        bearing = _wrap(np.arctan2(gap[..., 1], gap[..., 0]) - theta[:, None])
        return distance, turn, bearing

    da, ta, ba = geometry(a.xy[rows], a.theta[rows])
    db, tb, bb = geometry(b.xy[cols], b.theta[cols])
    rho = _sigmoid(np.abs(da - db), MU_RHO[0], TAU_RHO[0])
    rho *= _sigmoid(np.abs(_wrap(ta - tb)), MU_RHO[1], TAU_RHO[1])
    rho *= _sigmoid(np.abs(_wrap(ba - bb)), MU_RHO[2], TAU_RHO[2])
    np.fill_diagonal(rho, 0.0)
    return rho


def compare(a: MccTemplate, b: MccTemplate) -> float:
    """Similarity of two prints in [0, 1] (LSS-R); 0 when either has no valid cylinder."""
    if len(a) == 0 or len(b) == 0:
        return 0.0
    similarity = local_similarities(a, b)
    smaller = min(len(a), len(b))
    rows, cols = _greedy_pairs(similarity, smaller)
    if len(rows) == 0:
        return 0.0
    initial = similarity[rows, cols]
    relaxed = initial.copy()
    if len(rows) > 1:
        rho = _compatibility(a, b, rows, cols) / (len(rows) - 1)
        for _ in range(RELAXATION_ROUNDS):
            relaxed = RELAXATION_WEIGHT * relaxed + (1.0 - RELAXATION_WEIGHT) * (rho @ relaxed)
    # Pairs whose support from the others held up best are the trustworthy ones.
    efficiency = relaxed / initial
    wanted = _pair_count(smaller)
    best = np.argsort(-efficiency, kind="stable")[:wanted]
    return float(np.clip(relaxed[best].sum() / wanted, 0.0, 1.0))
