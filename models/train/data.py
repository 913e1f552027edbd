"""FVC2002 images at 500 ppi with the corpus ISO minutiae mapped onto them as labels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from edge.preprocess import resample
from edge.templates import iso19794_2_2005

TARGET_PPI = 500.0
DATABASE_PPI = {"DB1_B": 500.0, "DB2_B": 569.0, "DB3_B": 500.0, "DB4_B": 500.0}
SYNTHETIC = "SYNTH"  # the database name of hil.fingers impressions
# The kind of a row that marks a likely minutia the labels lack: training teaches its cell as
# neither minutia nor background (``--labels corpus-open``).
OPEN = -1


@dataclass(frozen=True)
class LabelledImage:
    """An image resampled to 500 ppi and its minutiae there.

    ``minutiae`` rows: x, y (pixels), dx, dy (unit direction in pixel axes, y down), kind
    (1 ending, 2 bifurcation, 0 other, ``OPEN`` not a label).
    """

    name: str
    database: str
    pixels: NDArray[np.uint8]
    minutiae: NDArray[np.float32]


def map_labels(
    record: iso19794_2_2005.FingerMinutiaeRecord, width: int, height: int
) -> NDArray[np.float32]:
    """Template minutiae onto a ``width`` x ``height`` image.

    The corpus templates were extracted from the image stretched to the record's size, so map
    pixel centre to pixel centre per axis and send the direction through the same scaling.
    """
    sx, sy = width / record.width, height / record.height
    rows = []
    for m in record.views[0].minutiae:
        theta = m.angle * 2 * math.pi / 256
        dx, dy = math.cos(theta) * sx, -math.sin(theta) * sy
        norm = math.hypot(dx, dy)
        rows.append(((m.x + 0.5) * sx - 0.5, (m.y + 0.5) * sy - 0.5, dx / norm, dy / norm, m.kind))
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


@dataclass(frozen=True)
class RawImage:
    """An image as captured and its minutiae in its own pixels (rows as in LabelledImage)."""

    name: str
    database: str
    ppi: float
    pixels: NDArray[np.uint8]
    minutiae: NDArray[np.float32]


def load_raw(tif: Path, ppi: float) -> RawImage:
    pixels = np.asarray(Image.open(tif).convert("L"), dtype=np.uint8)
    record = iso19794_2_2005.decode(tif.with_suffix(".iso").read_bytes())
    height, width = pixels.shape
    return RawImage(tif.stem, tif.parent.name, ppi, pixels, map_labels(record, width, height))


def to_target_ppi(raw: RawImage) -> LabelledImage:
    """Resample to 500 ppi and move the labels with it (pixel centre to pixel centre)."""
    pixels = resample(raw.pixels, raw.ppi, TARGET_PPI)
    height, width = raw.pixels.shape
    new_h, new_w = pixels.shape
    sx, sy = new_w / width, new_h / height
    labels = raw.minutiae.copy()
    labels[:, 0] = (labels[:, 0] + 0.5) * sx - 0.5
    labels[:, 1] = (labels[:, 1] + 0.5) * sy - 0.5
    direction = labels[:, 2:4] * np.array([sx, sy], dtype=np.float32)
    labels[:, 2:4] = direction / np.linalg.norm(direction, axis=1, keepdims=True)
    return LabelledImage(raw.name, raw.database, pixels, labels)


def load_raw_corpus(corpus: Path, databases: list[str]) -> list[RawImage]:
    images: list[RawImage] = []
    for database in databases:
        folder = corpus / "fvc2002" / database
        tifs = sorted(folder.glob("*.tif"))
        if not tifs:
            raise FileNotFoundError(f"no .tif images in {folder}")
        images.extend(load_raw(t, DATABASE_PPI[database]) for t in tifs)
    return images


def load_corpus(corpus: Path, databases: list[str]) -> list[LabelledImage]:
    return [to_target_ppi(raw) for raw in load_raw_corpus(corpus, databases)]
