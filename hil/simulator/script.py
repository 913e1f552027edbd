"""Which finger is on the simulated glass, advanced by what the host has done, not by a clock.

A placement stays on the sensor until the host has uploaded an image of it; the finger is then
lifted, and the next one is put down only after the host has seen the empty sensor (a GenImg
answered "no finger"), as an officer moving a subject's hand would. A finger whose image the host
does not take (its upload failed, or the kiosk showed an error) is lifted after a few more
GenImg polls, as a person told to lift would.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from firmware_bridge.zfm_protocol import IMAGE_HEIGHT, IMAGE_WIDTH

ImageSource = Callable[[int], npt.NDArray[np.uint8]]
"""Placement number (0, 1, 2, ...) -> grey image of any size."""

IMAGE_SUFFIXES = frozenset({".png", ".tif", ".tiff", ".bmp", ".pgm", ".jpg", ".jpeg"})
# What the sensor shows where there is no finger: optical live-scan background is light.
BACKGROUND = 255


def fit_image(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Centre ``image`` on the 256 x 288 sensor: crop what overhangs, pad with background.

    Cropping, not scaling, keeps the print at its own resolution, as a small sensor would see it.
    """
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"finger image must be 2-D uint8, got {image.dtype} {image.shape}")
    out = np.full((IMAGE_HEIGHT, IMAGE_WIDTH), BACKGROUND, dtype=np.uint8)
    src_y, dst_y, rows = _centre(image.shape[0], IMAGE_HEIGHT)
    src_x, dst_x, cols = _centre(image.shape[1], IMAGE_WIDTH)
    window = image[src_y : src_y + rows, src_x : src_x + cols]
    out[dst_y : dst_y + rows, dst_x : dst_x + cols] = window
    return out


def _centre(size: int, target: int) -> tuple[int, int, int]:
    """(source start, destination start, extent) that centres ``size`` in ``target``."""
    if size >= target:
        return (size - target) // 2, 0, target
    return 0, (target - size) // 2, size


class DirectoryImages:
    """Image files from a directory in name order, repeated as often as asked."""

    def __init__(self, directory: Path) -> None:
        self._paths = sorted(
            p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self._paths:
            raise ValueError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {directory}")

    def __len__(self) -> int:
        return len(self._paths)

    def __call__(self, index: int) -> npt.NDArray[np.uint8]:
        with Image.open(self._paths[index % len(self._paths)]) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)


# GenImg polls that see one finger before the person lifts it untaken: one is a normal capture,
# and a kiosk waiting for a lift after an error polls several times a second.
LIFT_PATIENCE = 8

# How long a GenImg from a host waits for a finger still being generated: a real module answers
# within about half a second, and the host gives up after a few seconds.
SERVING_ARRIVAL_WAIT = 0.5


@dataclass(frozen=True)
class Placement:
    """One finger put on the glass; ``number`` counts placements from 0."""

    number: int
    pixels: npt.NDArray[np.uint8]  # 288 x 256


class FingerScript:
    """A queue of placements: explicit ones from :meth:`place` first, then from ``source``.

    ``limit`` caps how many placements ``source`` provides (None: as many as the host takes).
    ``arrival_wait`` is how long a GenImg waits for ``source``'s next finger before the glass
    is reported empty (None: until it is made, for callers that want every GenImg to see it).
    ``patience`` is how many GenImg polls see a finger before it is lifted without an upload.
    Thread-safe: a test may queue fingers while the device serves the host.
    """

    def __init__(
        self,
        source: ImageSource | None = None,
        limit: int | None = None,
        arrival_wait: float | None = None,
        patience: int = LIFT_PATIENCE,
    ) -> None:
        if patience < 1:
            raise ValueError("patience must be at least one GenImg")
        self._source = source
        self._limit = limit
        self._arrival_wait = arrival_wait
        self._patience = patience
        self._taken_from_source = 0
        # A generated finger can take longer than a host waits for a GenImg reply (a real
        # sensor answers in well under a second), so the next image is made ahead of time.
        self._maker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finger-source")
        self._next_image: Future[npt.NDArray[np.uint8]] | None = None
        self._prefetch()
        self._queued: deque[npt.NDArray[np.uint8]] = deque()
        self._lock = threading.Lock()
        self._current: Placement | None = None
        self._touches = 0  # GenImg polls that have seen the current finger
        self._lift_unseen = False
        self._placed = 0
        self._lifts_seen = 0

    def place(self, image: npt.NDArray[np.uint8]) -> None:
        fitted = fit_image(image)
        with self._lock:
            self._queued.append(fitted)

    @property
    def placed(self) -> int:
        """How many fingers have been put down so far."""
        with self._lock:
            return self._placed

    @property
    def lifts_seen(self) -> int:
        """How many lifts the host has observed."""
        with self._lock:
            return self._lifts_seen

    def touch(self) -> Placement | None:
        """What the sensor sees at a GenImg: the finger on the glass, or None."""
        with self._lock:
            if self._current is not None and self._touches >= self._patience:
                self._lift()
            if self._current is None and not self._lift_unseen:
                self._current = self._next_placement()
                self._touches = 0
            if self._current is not None:
                self._touches += 1
                return self._current
            if self._lift_unseen:
                self._lift_unseen = False
                self._lifts_seen += 1
            return None

    def uploaded(self, number: int) -> None:
        """The host has the image of placement ``number``: that finger is lifted."""
        with self._lock:
            if self._current is not None and self._current.number == number:
                self._lift()

    def _lift(self) -> None:
        self._current = None
        self._lift_unseen = True

    def _prefetch(self) -> None:
        source = self._source
        if source is None or (self._limit is not None and self._taken_from_source >= self._limit):
            return
        index = self._taken_from_source
        self._next_image = self._maker.submit(lambda: fit_image(source(index)))

    def _next_placement(self) -> Placement | None:
        if self._queued:
            pixels = self._queued.popleft()
        elif self._next_image is not None:
            try:
                pixels = self._next_image.result(timeout=self._arrival_wait)
            except TimeoutError:
                return None  # the person has not put the finger down yet
            self._next_image = None
            self._taken_from_source += 1
            self._prefetch()
        else:
            return None
        placement = Placement(self._placed, pixels)
        self._placed += 1
        return placement


class RidgeImages:
    """Plain synthetic prints: concentric sinusoidal ridges in an elliptical finger outline.

    A stand-in when no real images or generator are given; each placement differs (centre,
    ridge period) in a way fixed by ``seed``.
    """

    def __init__(self, seed: int = 0) -> None:
        self._seed = seed

    def __call__(self, index: int) -> npt.NDArray[np.uint8]:
        rng = np.random.default_rng((self._seed, index))
        y, x = np.mgrid[0:IMAGE_HEIGHT, 0:IMAGE_WIDTH].astype(np.float32)
        cy = IMAGE_HEIGHT * rng.uniform(0.4, 0.6)
        cx = IMAGE_WIDTH * rng.uniform(0.4, 0.6)
        period = rng.uniform(8.0, 11.0)  # pixels at 500 ppi
        radius = np.hypot((y - cy) * 0.9, x - cx)
        ridges = 0.5 + 0.5 * np.cos(2 * np.pi * radius / period)
        inside = ((y - cy) / (IMAGE_HEIGHT * 0.42)) ** 2 + ((x - cx) / (IMAGE_WIDTH * 0.4)) ** 2 < 1
        grey = np.where(inside, 40 + 180 * (1 - ridges), BACKGROUND)
        return grey.astype(np.uint8)
