"""models.train.preparation's finger box: the network runs on the finger's cells only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray
from onnx import TensorProto, helper

import models
from edge.extraction import FingerBoxSpec, ManifestError, MinutiaeExtractor
from hil.fingers import FingerGenerator
from models.train.preparation import (
    BOX_PADS,
    NO_MINUTIA,
    PREFIX,
    finger_box_graph,
    main,
    with_preparation,
    without_preparation,
)

SHIPPED = Path(models.__file__).parent
CELL = 8


def _box_session(box: FingerBoxSpec) -> ort.InferenceSession:
    nodes, initializers = finger_box_graph("prepared", "cut", box, CELL)
    graph = helper.make_graph(
        nodes,
        "finger_box",
        [helper.make_tensor_value_info("prepared", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [
            helper.make_tensor_value_info("cut", TensorProto.FLOAT, [1, 1, "H", "W"]),
            helper.make_tensor_value_info(BOX_PADS, TensorProto.INT64, [8]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _cut(
    box: FingerBoxSpec, prepared: NDArray[np.float32]
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    cut, pads = _box_session(box).run(None, {"prepared": prepared[None, None]})
    return cut[0, 0], pads


def _textured(rows: int, cols: int, cells: list[tuple[int, int]]) -> NDArray[np.float32]:
    """A flat prepared image with ridge-like stripes (spread 1) in the given cells."""
    image = np.zeros((rows * CELL, cols * CELL), dtype=np.float32)
    stripes = np.where(np.arange(CELL) % 4 < 2, 1.0, -1.0).astype(np.float32)
    for r, c in cells:
        image[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] = stripes[None, :]
    return image


def test_the_box_is_the_textured_cells_widened_by_the_margin() -> None:
    image = _textured(20, 30, [(6, 9), (11, 14), (8, 20)])
    cut, pads = _cut(FingerBoxSpec(min_spread=0.3, margin=16), image)
    # rows 6..11 and columns 9..20, two cells more on each side
    assert pads.tolist() == [0, 0, 4, 7, 0, 0, 20 - 14, 30 - 23]
    assert np.array_equal(cut, image[4 * CELL : 14 * CELL, 7 * CELL : 23 * CELL])


def test_the_margin_stops_at_the_image_edges() -> None:
    image = _textured(10, 12, [(0, 11), (9, 0)])
    cut, pads = _cut(FingerBoxSpec(min_spread=0.3, margin=32), image)
    assert pads.tolist() == [0] * 8
    assert np.array_equal(cut, image)


def test_cells_that_spread_less_than_the_limit_are_background() -> None:
    image = _textured(10, 10, [(2, 2), (7, 7)])
    image[7 * CELL : 8 * CELL, 7 * CELL : 8 * CELL] *= 0.25  # spread 0.25
    _, pads = _cut(FingerBoxSpec(min_spread=0.3, margin=0), image)
    assert pads.tolist() == [0, 0, 2, 2, 0, 0, 7, 7]


def test_an_image_with_no_textured_cell_is_used_whole() -> None:
    image = np.zeros((5 * CELL, 3 * CELL), dtype=np.float32)
    cut, pads = _cut(FingerBoxSpec(min_spread=0.3, margin=8), image)
    assert pads.tolist() == [0] * 8
    assert cut.shape == image.shape


@settings(max_examples=60, deadline=None)
@given(
    spread=arrays(
        np.float32,
        st.tuples(st.integers(1, 12), st.integers(1, 12)),
        elements=st.floats(0, 1, width=32),
    ),
    margin_cells=st.integers(0, 4),
)
def test_the_box_lies_on_whole_cells_inside_the_image_and_holds_every_textured_cell(
    spread: NDArray[np.float32], margin_cells: int
) -> None:
    rows, cols = spread.shape
    image = _textured(rows, cols, [(r, c) for r in range(rows) for c in range(cols)])
    image *= np.kron(spread, np.ones((CELL, CELL), dtype=np.float32))
    cut, pads = _cut(FingerBoxSpec(min_spread=0.3, margin=margin_cells * CELL), image)
    top, left, bottom, right = int(pads[2]), int(pads[3]), int(pads[6]), int(pads[7])
    assert min(top, left, bottom, right) >= 0 and pads[[0, 1, 4, 5]].tolist() == [0] * 4
    assert cut.shape == ((rows - top - bottom) * CELL, (cols - left - right) * CELL)
    kept = np.zeros((rows, cols), dtype=bool)
    kept[top : rows - bottom, left : cols - right] = True
    assert kept.any()
    assert kept[spread > 0.3 + 1e-4].all()


def test_a_margin_of_part_cells_is_refused() -> None:
    with pytest.raises(ValueError, match="whole cells"):
        finger_box_graph("prepared", "cut", FingerBoxSpec(min_spread=0.3, margin=12), CELL)


@pytest.fixture(scope="module")
def boxed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model directory with the finger box put into its graphs."""
    directory = tmp_path_factory.mktemp("boxed")
    for name in ("manifest.json", "minutiae.onnx", "minutiae.int8.onnx"):
        shutil.copy(SHIPPED / name, directory / name)
    assert main(["--model-dir", str(directory), "--finger-box", "--version", "9.9.11"]) == 0
    return directory


def _on_a_big_platen(finger_id: int) -> NDArray[np.uint8]:
    """An impression in the corner of a platen twice its size, as a large sensor gives it."""
    image = FingerGenerator(seed=13).impression(finger_id, 0, width=224, height=256).image
    platen = np.full((2 * image.shape[0], 2 * image.shape[1]), image.max(), dtype=np.uint8)
    platen[: image.shape[0], : image.shape[1]] = image
    return platen


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_boxed_graph_finds_what_the_whole_graph_finds_and_nothing_off_the_finger(
    boxed: Path, precision: str
) -> None:
    whole = MinutiaeExtractor.load(SHIPPED, precision=precision)  # type: ignore[arg-type]
    cropped = MinutiaeExtractor.load(boxed, precision=precision)  # type: ignore[arg-type]
    same = found = 0
    for finger_id in range(3):
        image = _on_a_big_platen(finger_id)
        heads, _ = cropped.heads(image, 500.0)
        full, _ = whole.heads(image, 500.0)
        assert heads.shape == full.shape
        rows, cols = full.shape[-2:]
        outside = np.all(heads == NO_MINUTIA, axis=0)
        assert outside[-rows // 3 :, :].all() and outside[:, -cols // 3 :].all()  # bare platen
        assert not outside[: rows // 3, : cols // 3].any()
        a = {(round(m.x), round(m.y)) for m in whole.extract(image, 500.0)}
        b = {(round(m.x), round(m.y)) for m in cropped.extract(image, 500.0)}
        assert all(x < 224 and y < 256 for x, y in b)
        same += len(a & b)
        found += max(len(a), len(b))
    assert found > 60
    assert same >= 0.95 * found


def test_the_manifest_records_the_box_and_a_later_preparation_keeps_it(
    boxed: Path, tmp_path: Path
) -> None:
    content = json.loads((boxed / "manifest.json").read_text())
    assert content["input"]["finger_box"] == {"min_spread": 0.3, "margin": 32}
    assert content["int8"]["quantised_from"] == content["sha256"]
    again = tmp_path / "again"
    shutil.copytree(boxed, again)
    assert main(["--model-dir", str(again)]) == 0
    assert (again / "minutiae.onnx").read_bytes() == (boxed / "minutiae.onnx").read_bytes()
    assert main(["--model-dir", str(again), "--whole-image"]) == 0
    assert "finger_box" not in json.loads((again / "manifest.json").read_text())["input"]
    # the shipped int8 file also holds the quantiser's shape records of the preparation
    assert (again / "minutiae.onnx").read_bytes() == (SHIPPED / "minutiae.onnx").read_bytes()


def test_taking_the_preparation_off_gives_back_the_network(boxed: Path) -> None:
    for name in ("minutiae.onnx", "minutiae.int8.onnx"):
        network = without_preparation(onnx.load(str(boxed / name)))
        shipped = without_preparation(onnx.load(str(SHIPPED / name)))
        assert network.SerializeToString() == shipped.SerializeToString()
        assert not any(node.name.startswith(PREFIX) for node in network.graph.node)


def test_a_network_with_two_outputs_cannot_be_boxed() -> None:
    network = without_preparation(onnx.load(str(SHIPPED / "minutiae.onnx")))
    network.graph.output.append(network.graph.output[0])
    box = FingerBoxSpec(min_spread=0.3, margin=32)
    with pytest.raises(ValueError, match="one output"):
        with_preparation(network, "flattened", CELL, box)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input": {"finger_box": {"min_spread": 0.3, "margin": 12}}}, "whole cells"),
        ({"input": {"finger_box": {"min_spread": 1.5, "margin": 32}}}, "min_spread"),
        ({"input": {"finger_box": {"margin": 32}}}, "min_spread"),
        ({"decoding": {"cell_size": 16}}, "cell size"),
    ],
)
def test_a_malformed_finger_box_is_a_malformed_manifest(
    boxed: Path, tmp_path: Path, change: dict[str, dict[str, object]], message: str
) -> None:
    for name in ("manifest.json", "minutiae.onnx"):
        shutil.copy(boxed / name, tmp_path / name)
    content = json.loads((tmp_path / "manifest.json").read_text())
    for section, values in change.items():
        content[section] |= values
    (tmp_path / "manifest.json").write_text(json.dumps(content))
    with pytest.raises(ManifestError, match=message):
        MinutiaeExtractor.load(tmp_path)
