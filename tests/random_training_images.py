"""Tiny random training images with five minutiae each, for tests of the training loop."""

from __future__ import annotations

import numpy as np

from models.train.data import LabelledImage


def random_training_images(database: str, count: int, seed: int) -> list[LabelledImage]:
    """``count`` 48 x 56 noise images of ``database``, each with five labelled endings."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        pixels = rng.integers(0, 255, (48, 56), dtype=np.uint8)
        angle = rng.uniform(0, 2 * np.pi, 5)
        rows = np.column_stack(
            [rng.uniform(4, 50, 5), rng.uniform(4, 44, 5), np.cos(angle), np.sin(angle), np.ones(5)]
        )
        images.append(LabelledImage(f"{i}", database, pixels, rows.astype(np.float32)))
    return images
