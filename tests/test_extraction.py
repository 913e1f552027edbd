"""The shipped minutiae model through MinutiaeExtractor: loading safely, and what it extracts."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

import models
from edge.extraction import (
    ManifestError,
    MinutiaeExtractor,
    ModelCorruptError,
    ModelMissingError,
    model_input,
)
from edge.minutiae import Minutia
from edge.preprocess import flatten_background, standardise
from hil.fingers import FingerGenerator

SHIPPED = Path(models.__file__).parent
FIXTURE_IMAGE = Path(__file__).parent / "fixtures" / "images" / "fvc2002_db4_103_1.png"


@pytest.fixture(scope="module")
def extractor() -> MinutiaeExtractor:
    return MinutiaeExtractor.load()


@pytest.fixture(scope="module")
def print_image() -> NDArray[np.uint8]:
    return np.asarray(Image.open(FIXTURE_IMAGE).convert("L"), dtype=np.uint8)


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    for name in ("manifest.json", "minutiae.onnx"):
        shutil.copy(SHIPPED / name, tmp_path / name)
    return tmp_path


def _edit_manifest(directory: Path, **changes: object) -> None:
    path = directory / "manifest.json"
    content = json.loads(path.read_text())
    content.update(changes)
    path.write_text(json.dumps(content))


def test_default_directory_is_the_shipped_model(extractor: MinutiaeExtractor) -> None:
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert extractor.version == f"{manifest['name']}/{manifest['version']}"


def test_missing_manifest_is_reported_as_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelMissingError, match="manifest"):
        MinutiaeExtractor.load(tmp_path)


def test_missing_model_file_is_reported_as_missing(model_copy: Path) -> None:
    (model_copy / "minutiae.onnx").unlink()
    with pytest.raises(ModelMissingError, match=r"minutiae\.onnx"):
        MinutiaeExtractor.load(model_copy)


def test_a_flipped_byte_fails_the_hash_check_before_onnx_runtime(model_copy: Path) -> None:
    path = model_copy / "minutiae.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelCorruptError, match="sha256"):
        MinutiaeExtractor.load(model_copy)


def test_a_file_onnx_runtime_refuses_is_corrupt_even_with_a_matching_hash(model_copy: Path) -> None:
    import hashlib

    garbage = b"not an onnx model"
    (model_copy / "minutiae.onnx").write_bytes(garbage)
    _edit_manifest(model_copy, sha256=hashlib.sha256(garbage).hexdigest())
    with pytest.raises(ModelCorruptError, match="refused"):
        MinutiaeExtractor.load(model_copy)


@pytest.mark.parametrize(
    "change",
    [
        {"sha256": "not-a-hash"},
        {"file": "../elsewhere.onnx"},
        {"decoding": {"cell_size": 8}},
        {"output": {"name": "heads", "shape": [1, 7], "channels": ["presence"]}},
    ],
    ids=["sha256", "file", "decoding", "channels"],
)
def test_malformed_manifest_names_the_field(model_copy: Path, change: dict[str, object]) -> None:
    _edit_manifest(model_copy, **change)
    field = next(iter(change))
    with pytest.raises(ManifestError, match=field):
        MinutiaeExtractor.load(model_copy)


def test_manifest_that_is_not_json_is_malformed(model_copy: Path) -> None:
    (model_copy / "manifest.json").write_text("{ not json")
    with pytest.raises(ManifestError, match="malformed manifest"):
        MinutiaeExtractor.load(model_copy)


def test_synthetic_finger_gives_its_true_minutiae_inside_the_image(
    extractor: MinutiaeExtractor,
) -> None:
    impression = FingerGenerator(seed=3).impression(finger_id=1, impression_id=0)
    found = extractor.extract(impression.image, impression.ppi)
    height, width = impression.image.shape
    for m in found:
        assert 0 <= m.x < width and 0 <= m.y < height
        assert 0 <= m.angle < 360 and 0 <= m.quality <= 100
    truth = impression.minutiae
    pairs = [(p, q) for p, q in _pairs(found, truth, radius=12.0) if _turn(p.angle, q.angle) <= 30]
    assert len(pairs) >= 0.5 * len(truth) and len(pairs) >= 0.5 * len(found)


def test_the_same_image_gives_the_same_minutiae(
    extractor: MinutiaeExtractor, print_image: NDArray[np.uint8]
) -> None:
    first = extractor.extract(print_image, 500.0)
    assert first
    assert extractor.extract(print_image.copy(), 500.0) == first


def test_a_blank_image_gives_no_minutiae(extractor: MinutiaeExtractor) -> None:
    assert extractor.extract(np.full((300, 300), 200, dtype=np.uint8), 500.0) == []


def test_non_image_input_is_refused(extractor: MinutiaeExtractor) -> None:
    with pytest.raises(ValueError, match="2-D uint8"):
        extractor.extract(np.zeros((10, 10, 3), dtype=np.uint8), 500.0)


@pytest.mark.parametrize(
    ("shape", "ppi"), [((300, 300), 50.0), ((300, 300), 5000.0), ((4000, 10), 400.0)]
)
def test_resolutions_and_sizes_that_would_need_huge_buffers_are_refused(
    extractor: MinutiaeExtractor, shape: tuple[int, int], ppi: float
) -> None:
    with pytest.raises(ValueError, match=r"ppi|pixels long"):
        extractor.extract(np.zeros(shape, dtype=np.uint8), ppi)


def _pairs(a: list[Minutia], b: list[Minutia], radius: float) -> list[tuple[Minutia, Minutia]]:
    """Greedy one-to-one nearest pairs within ``radius``."""
    candidates = sorted(
        (math.hypot(p.x - q.x, p.y - q.y), i, j)
        for i, p in enumerate(a)
        for j, q in enumerate(b)
        if math.hypot(p.x - q.x, p.y - q.y) <= radius
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs = []
    for _, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((a[i], b[j]))
    return pairs


def _turn(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def test_rotating_the_image_a_quarter_turn_rotates_directions_by_90_degrees(
    extractor: MinutiaeExtractor, print_image: NDArray[np.uint8]
) -> None:
    width = print_image.shape[1]
    upright = extractor.extract(print_image, 500.0)
    turned = extractor.extract(np.ascontiguousarray(np.rot90(print_image)), 500.0)
    # np.rot90 turns the picture counter-clockwise on screen: (x, y) -> (y, W-1-x), angle + 90
    expected = [
        Minutia(m.y, width - 1 - m.x, (m.angle + 90.0) % 360.0, m.kind, m.quality) for m in upright
    ]
    pairs = _pairs(expected, turned, radius=6.0)
    assert len(pairs) >= 0.6 * min(len(upright), len(turned))
    agreeing = sum(_turn(p.angle, q.angle) <= 20.0 for p, q in pairs)
    assert agreeing >= 0.8 * len(pairs)
    # and not a coincidence of symmetric angles: the unrotated angles mostly disagree
    unturned = sum(_turn((p.angle - 90.0) % 360.0, q.angle) <= 20.0 for p, q in pairs)
    assert unturned < 0.3 * len(pairs)


def test_minutiae_agree_with_the_reference_template_of_the_fixture(
    extractor: MinutiaeExtractor, print_image: NDArray[np.uint8]
) -> None:
    from edge.templates import iso2005_minutiae

    record, (reference,) = iso2005_minutiae(
        (FIXTURE_IMAGE.parents[1] / "iso19794_2_2005" / "fvc2002_db4_103_1.iso").read_bytes()
    )
    height, width = print_image.shape
    sx, sy = width / record.width, height / record.height
    mapped = []
    for m in reference:
        rad = math.radians(m.angle)
        angle = math.degrees(math.atan2(math.sin(rad) * sy, math.cos(rad) * sx)) % 360.0
        mapped.append(Minutia((m.x + 0.5) * sx - 0.5, (m.y + 0.5) * sy - 0.5, angle, m.kind, 0))
    found = extractor.extract(print_image, 500.0)
    pairs = [(p, q) for p, q in _pairs(found, mapped, radius=12.0) if _turn(p.angle, q.angle) <= 30]
    # an untrained or mirrored model scores near zero here
    assert len(pairs) >= 0.4 * len(mapped)


def test_the_manifest_says_whether_the_background_is_flattened_before_the_network(
    print_image: NDArray[np.uint8],
) -> None:
    on_host = {"preparation": "host", "dtype": "float32"}
    spec = MinutiaeExtractor.load().manifest.input.model_copy(update=on_host)
    grey = np.round(print_image * 0.4).astype(np.uint8)  # a capacitive sensor's grey platen
    as_captured = spec.model_copy(update={"background": "as_captured"})
    flattened = spec.model_copy(update={"background": "flattened"})
    tensor, resampled = model_input(grey, 500.0, as_captured)
    assert np.array_equal(resampled, grey)
    assert np.allclose(tensor[0, 0, : grey.shape[0], : grey.shape[1]], standardise(grey))
    tensor, _ = model_input(grey, 500.0, flattened)
    expected = standardise(flatten_background(grey))
    assert np.allclose(tensor[0, 0, : grey.shape[0], : grey.shape[1]], expected)


def test_a_manifest_from_before_flattening_feeds_the_image_as_captured(model_copy: Path) -> None:
    path = model_copy / "manifest.json"
    content = json.loads(path.read_text())
    content["input"].pop("background", None)
    path.write_text(json.dumps(content))
    assert MinutiaeExtractor.load(model_copy).manifest.input.background == "as_captured"


def test_an_unknown_background_treatment_is_a_malformed_manifest(model_copy: Path) -> None:
    path = model_copy / "manifest.json"
    content = json.loads(path.read_text())
    content["input"]["background"] = "inverted"
    path.write_text(json.dumps(content))
    with pytest.raises(ManifestError, match=r"input\.background"):
        MinutiaeExtractor.load(model_copy)
