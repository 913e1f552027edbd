"""Skeletons of binary ridge maps: Zhang-Suen thinning, crossing numbers, walking along lines."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from hil.fingers.raster import BoolImage

# Neighbours P2..P9 of Zhang-Suen: N, NE, E, SE, S, SW, W, NW as (dy, dx), clockwise on screen.
_RING = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


def _neighbours(image: BoolImage) -> list[npt.NDArray[np.uint8]]:
    padded = np.pad(image, 1).astype(np.uint8)
    rows, cols = image.shape
    return [padded[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols] for dy, dx in _RING]


def _transitions(ring: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.uint8]:
    """Number of 0->1 steps walking once round the ring."""
    count = np.zeros(ring[0].shape, dtype=np.uint8)
    for k in range(8):
        count += (ring[k] == 0) & (ring[(k + 1) % 8] == 1)
    return count


def thin(image: BoolImage) -> BoolImage:
    """One-pixel-wide 8-connected skeleton (Zhang and Suen, 1984)."""
    skeleton = image.copy()
    while True:
        changed = False
        for second in (False, True):
            ring = _neighbours(skeleton)
            p2, p4, p6, p8 = ring[0], ring[2], ring[4], ring[6]
            count = sum(r.astype(np.uint8) for r in ring)
            if second:
                keep_a, keep_b = p2 * p4 * p8, p2 * p6 * p8
            else:
                keep_a, keep_b = p2 * p4 * p6, p4 * p6 * p8
            delete = (
                skeleton
                & (count >= 2)
                & (count <= 6)
                & (_transitions(ring) == 1)
                & (keep_a == 0)
                & (keep_b == 0)
            )
            if delete.any():
                skeleton &= ~delete
                changed = True
        if not changed:
            return skeleton


def crossing_number(skeleton: BoolImage) -> npt.NDArray[np.uint8]:
    """Crossing number of each skeleton pixel (1 line end, 2 line, 3+ fork); 0 off the skeleton."""
    cn = _transitions(_neighbours(skeleton))
    cn[~skeleton] = 0
    return cn


def walk(
    skeleton: BoolImage, crossings: npt.NDArray[np.uint8], start: tuple[int, int], steps: int
) -> tuple[tuple[int, int], int, bool]:
    """Follow the skeleton line leaving ``start`` (row, col) for at most ``steps`` pixels.

    Returns the last pixel reached, the number of steps taken and whether the walk stopped at
    another end or a fork before using all its steps.
    """
    rows, cols = skeleton.shape
    visited = {start}
    current = start
    for taken in range(steps):
        if taken > 0 and crossings[current] != 2:
            return current, taken, True
        candidates = [
            (current[0] + dy, current[1] + dx)
            for dy, dx in _RING
            if 0 <= current[0] + dy < rows
            and 0 <= current[1] + dx < cols
            and skeleton[current[0] + dy, current[1] + dx]
            and (current[0] + dy, current[1] + dx) not in visited
        ]
        if not candidates:
            return current, taken, True
        # At a staircase corner both the side and the diagonal pixel are unvisited; the side one
        # comes first along the line.
        current = min(candidates, key=lambda p: abs(p[0] - current[0]) + abs(p[1] - current[1]))
        visited.add(current)
    return current, steps, False
