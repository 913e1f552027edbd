"""The shipped model matches its manifest: hash, input, outputs, dynamic size, provenance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import models
from edge.extraction import HEAD_CHANNELS, Manifest

SHIPPED = Path(models.__file__).parent


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return Manifest.model_validate(json.loads((SHIPPED / "manifest.json").read_text()))


def test_shipped_model_hash_is_the_one_in_the_manifest(manifest: Manifest) -> None:
    digest = hashlib.sha256((SHIPPED / manifest.file).read_bytes()).hexdigest()
    assert digest == manifest.sha256


def test_model_takes_an_image_of_any_size_and_returns_one_cell_per_8x8_begun(
    manifest: Manifest,
) -> None:
    session = ort.InferenceSession(str(SHIPPED / manifest.file), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert model_input.name == manifest.input.name
    assert model_input.type == f"tensor({manifest.input.dtype})"
    assert all(isinstance(d, str) for d in model_input.shape[2:])  # symbolic: dynamic H and W
    cell = manifest.decoding.cell_size
    for height, width in [(64, 48), (384, 288), (8 * 49, 8 * 47), (61, 45), (374, 388)]:
        image = np.zeros((1, 1, height, width), dtype=manifest.input.dtype)
        (heads,) = session.run([manifest.output.name], {manifest.input.name: image})
        assert heads.shape == (1, len(HEAD_CHANNELS), -(-height // cell), -(-width // cell))


def test_model_uses_opset_17(manifest: Manifest) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(SHIPPED / manifest.file))
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {17}


def test_manifest_records_how_the_model_was_made_and_measured(manifest: Manifest) -> None:
    extra = manifest.model_extra or {}
    assert extra["training"]["command"].startswith("python -m models.train ")
    assert extra["metrics"]["tolerance"] == {
        "distance_px": 12.0,
        "angle_deg": 30.0,
        "pairing": "one-to-one",
    }
    assert 0 < extra["metrics"]["training_databases"]["all"]["f1"] <= 1


def test_model_card_ships_beside_the_model() -> None:
    card = (SHIPPED / "MODEL_CARD.md").read_text()
    assert "Leave-one-database-out" in card and "Limitations" in card
