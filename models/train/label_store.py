"""Minutiae labels for many images in one compact ``.npz`` file, checked when read back.

Rows are ``x, y, angle, kind, score``: image pixels (origin top-left, y down), the ISO/IEC
19794-2 angle in degrees counter-clockwise as seen on screen, the ISO kind code (1 ending,
2 bifurcation, 0 other) and the labeller's confidence in [0, 1] (1 for exact synthetic truth).
"""

from __future__ import annotations

import hashlib
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from models.train.data import OPEN, RawImage

COLUMNS = ("x", "y", "angle", "kind", "score")
MAX_IMAGES = 1_000_000
MAX_ROWS = 50_000_000


class LabelStoreError(ValueError):
    """A label file that is missing a field or whose fields disagree with each other."""


@dataclass(frozen=True)
class LabelSet:
    """Per-image minutiae: image ``i`` owns ``minutiae[offsets[i]:offsets[i + 1]]``."""

    names: NDArray[np.str_]
    image_sha256: NDArray[np.str_]  # of the pixel bytes the labels were made from
    ppi: NDArray[np.float32]
    offsets: NDArray[np.int64]
    minutiae: NDArray[np.float32]

    def __post_init__(self) -> None:
        count = len(self.names)
        if len(self.image_sha256) != count or len(self.ppi) != count:
            raise LabelStoreError("names, image_sha256 and ppi differ in length")
        if self.offsets.shape != (count + 1,) or self.offsets[0] != 0:
            raise LabelStoreError(f"offsets must be {count + 1} long and start at 0")
        if np.any(np.diff(self.offsets) < 0) or self.offsets[-1] != len(self.minutiae):
            raise LabelStoreError("offsets must rise to the number of minutiae rows")
        if self.minutiae.ndim != 2 or self.minutiae.shape[1] != len(COLUMNS):
            raise LabelStoreError(f"minutiae must be rows of {len(COLUMNS)}: {COLUMNS}")
        if not np.all(np.isfinite(self.minutiae)):
            raise LabelStoreError("minutiae hold a non-finite value")
        if len(set(self.names.tolist())) != count:
            raise LabelStoreError("image names repeat")

    @classmethod
    def build(cls, entries: list[tuple[str, str, float, NDArray[np.float32]]]) -> LabelSet:
        """From ``(name, image_sha256, ppi, rows)`` per image."""
        counts = [len(rows) for _, _, _, rows in entries]
        rows = [r.reshape(-1, len(COLUMNS)) for _, _, _, r in entries]
        return cls(
            names=np.array([e[0] for e in entries], dtype=np.str_),
            image_sha256=np.array([e[1] for e in entries], dtype=np.str_),
            ppi=np.array([e[2] for e in entries], dtype=np.float32),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            minutiae=(
                np.concatenate(rows).astype(np.float32)
                if rows
                else np.zeros((0, len(COLUMNS)), np.float32)
            ),
        )

    def __len__(self) -> int:
        return len(self.names)

    def rows(self, index: int) -> NDArray[np.float32]:
        return self.minutiae[self.offsets[index] : self.offsets[index + 1]]

    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names.tolist())}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        fields = {
            "names": self.names,
            "image_sha256": self.image_sha256,
            "ppi": self.ppi,
            "offsets": self.offsets,
            "minutiae": self.minutiae,
        }
        # Written by hand rather than np.savez so that the same labels give the same bytes
        # (savez stamps each member with the current time): reruns can be checked by sha256.
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for key, value in fields.items():
                member = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                member.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(member, "w") as handle:
                    np.lib.format.write_array(handle, np.ascontiguousarray(value))
        os.chmod(partial, 0o600)  # minutiae of real fingers are personal data
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> LabelSet:
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = {k: data[k] for k in ("names", "image_sha256", "ppi", "offsets")}
                counts = (len(fields["names"]), int(fields["offsets"][-1]))
                if counts[0] > MAX_IMAGES or counts[1] > MAX_ROWS:
                    raise LabelStoreError(f"{path}: {counts} images/rows exceed the limits")
                minutiae = data["minutiae"]
        except (KeyError, zipfile.BadZipFile, OSError, EOFError) as error:
            raise LabelStoreError(f"{path}: not a label file ({error})") from error
        except (ValueError, IndexError) as error:
            if isinstance(error, LabelStoreError):
                raise
            raise LabelStoreError(f"{path}: malformed field ({error})") from error
        try:
            return cls(
                names=fields["names"].astype(np.str_),
                image_sha256=fields["image_sha256"].astype(np.str_),
                ppi=fields["ppi"].astype(np.float32),
                offsets=fields["offsets"].astype(np.int64),
                minutiae=minutiae.astype(np.float32),
            )
        except LabelStoreError as error:
            raise LabelStoreError(f"{path}: {error}") from error


def pixels_sha256(pixels: NDArray[np.uint8]) -> str:
    """Digest of an image's shape and bytes: tells whether labels still belong to it."""
    digest = hashlib.sha256(f"{pixels.shape[0]}x{pixels.shape[1]}:".encode())
    digest.update(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def training_rows(rows: NDArray[np.float32], min_score: float = 0.0) -> NDArray[np.float32]:
    """Store rows at or above ``min_score`` as ``models.train.data`` rows: x, y, dx, dy, kind."""
    kept = rows[rows[:, 4] >= min_score]
    theta = np.radians(kept[:, 2])
    return np.stack(
        [kept[:, 0], kept[:, 1], np.cos(theta), -np.sin(theta), kept[:, 3]], axis=1
    ).astype(np.float32)


def _rows_for(image: RawImage, labels: LabelSet, where: dict[str, int]) -> NDArray[np.float32]:
    """``labels``' store rows for ``image``, refused when its pixels or resolution changed."""
    key = f"{image.database}/{image.name}"
    if key not in where:
        raise LabelStoreError(f"no labels for {key}")
    i = where[key]
    if labels.image_sha256[i] != pixels_sha256(image.pixels):
        raise LabelStoreError(f"{key}: the image differs from the one labelled")
    if not math.isclose(float(labels.ppi[i]), image.ppi, rel_tol=1e-4):
        raise LabelStoreError(f"{key}: labelled at {labels.ppi[i]} ppi, not {image.ppi}")
    return labels.rows(i)


def relabel(images: list[RawImage], labels: LabelSet, min_score: float = 0.0) -> list[RawImage]:
    """The same images with their minutiae replaced by ``labels`` (matched by database/name).

    Raises :class:`LabelStoreError` when an image has no labels or its pixels changed since.
    """
    where = labels.index()
    return [
        RawImage(
            image.name,
            image.database,
            image.ppi,
            image.pixels,
            training_rows(_rows_for(image, labels, where), min_score),
        )
        for image in images
    ]


def with_open_extras(
    images: list[RawImage], labels: LabelSet, min_score: float, radius: float
) -> list[RawImage]:
    """The same images, their minutiae joined by the store's rows farther than ``radius`` from all.

    The added rows have kind ``OPEN``: minutiae another extractor is sure of and the labels
    lack, which training leaves untaught rather than teaching them as background.
    """
    where = labels.index()
    extended = []
    for image in images:
        rows = training_rows(_rows_for(image, labels, where), min_score)
        gaps = rows[:, None, :2] - image.minutiae[None, :, :2]
        rows = rows[(np.hypot(gaps[..., 0], gaps[..., 1]) > radius).all(axis=1)]
        rows[:, 4] = OPEN
        minutiae = np.concatenate([image.minutiae, rows]).astype(np.float32)
        extended.append(RawImage(image.name, image.database, image.ppi, image.pixels, minutiae))
    return extended
