"""A miniature development corpus on disk: synthetic images with ISO templates beside them."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from edge import templates
from hil.fingers import FingerGenerator


def write_miniature_corpus(root: Path, databases: list[str], seed: int) -> Path:
    """Three fingers x two impressions per database, named and laid out like FVC2002."""
    generator = FingerGenerator(seed=seed)
    for n, database in enumerate(databases):
        folder = root / "fvc2002" / database
        folder.mkdir(parents=True)
        for finger in range(3):
            for impression in range(2):
                shot = generator.impression(10 * n + finger, impression, width=288, height=384)
                stem = folder / f"{101 + finger}_{impression + 1}"
                Image.fromarray(shot.image).save(stem.with_suffix(".tif"))
                record = templates.minutiae_to_iso2005(
                    shot.minutiae,
                    width=288,
                    height=384,
                    ppi=500.0,
                    finger_position=0,
                    impression_type=0,
                    quality=0,
                )
                stem.with_suffix(".iso").write_bytes(record)
    return root
