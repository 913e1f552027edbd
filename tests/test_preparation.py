"""models.train.preparation: the extractor's input preparation inside the ONNX graph."""

from __future__ import annotations

import hashlib
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
from edge.extraction import (
    Background,
    ManifestError,
    MinutiaeExtractor,
    load_manifest,
    model_input,
)
from edge.minutiae import Minutia
from edge.preprocess import flatten_background, standardise
from hil.fingers import FingerGenerator
from models.train.preparation import (
    PREFIX,
    PREPARED,
    main,
    preparation_graph,
    prepare_model_dir,
    with_preparation,
    without_preparation,
)
from models.train.quantize import Recipe, fp32_nodes

SHIPPED = Path(models.__file__).parent
# Float rounding only: the graph and numpy sum in different orders, and one step of float32 at
# 255 is 1.5e-5. A background level one grey level off moves pixels by about 1e-2.
TOLERANCE = 1e-4


def _preparation_session(background: Background, multiple: int) -> ort.InferenceSession:
    nodes, initializers = preparation_graph("image", "prepared", background, multiple)
    graph = helper.make_graph(
        nodes,
        "preparation",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 1, "h", "w"])],
        [helper.make_tensor_value_info("prepared", TensorProto.FLOAT, [1, 1, "H", "W"])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def flattening() -> ort.InferenceSession:
    return _preparation_session("flattened", 8)


def _on_host(
    image: NDArray[np.uint8], background: Background, multiple: int
) -> NDArray[np.float32]:
    levels = flatten_background(image) if background == "flattened" else image
    return standardise(levels, multiple)


def _assert_prepared_alike(session: ort.InferenceSession, image: NDArray[np.uint8]) -> None:
    (graph,) = session.run(None, {"image": image[None, None]})
    host = _on_host(image, "flattened", 8)
    assert graph.shape[2:] == host.shape
    assert np.abs(graph[0, 0] - host).max() <= TOLERANCE


@st.composite
def platens(draw: st.DrawFn) -> NDArray[np.uint8]:
    """Uneven backgrounds with ridges on them: random levels per 4 x 4 block, so the blurred
    valley level varies (a noise image's block maxima are all near 255), with darker pixels."""
    height, width = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    rows, cols = -(-height // 4), -(-width // 4)
    levels = draw(arrays(np.uint8, (rows, cols), elements=st.integers(0, 255)))
    dips = draw(arrays(np.uint8, (height, width), elements=st.integers(0, 255)))
    background = np.kron(levels, np.ones((4, 4), dtype=np.uint8))[:height, :width]
    image: NDArray[np.uint8] = np.minimum(background, dips)
    return image


@settings(max_examples=150, deadline=None)
@given(image=platens())
def test_the_graph_prepares_any_image_as_the_host_does(
    flattening: ort.InferenceSession, image: NDArray[np.uint8]
) -> None:
    _assert_prepared_alike(flattening, image)


def test_a_finger_on_an_uneven_grey_platen_is_prepared_as_on_the_host(
    flattening: ort.InferenceSession,
) -> None:
    finger = FingerGenerator(seed=3).impression(finger_id=1, impression_id=0).image
    height, width = finger.shape
    shade = 0.55 + 0.35 * np.add.outer(np.linspace(0, 1, height), np.linspace(0, 1, width)) / 2
    _assert_prepared_alike(flattening, np.round(finger * shade).astype(np.uint8))


@pytest.mark.parametrize("multiple", [1, 8, 16])
def test_an_image_left_as_captured_is_only_standardised_and_padded(multiple: int) -> None:
    image = FingerGenerator(seed=5).impression(finger_id=2, impression_id=1).image[:203, :141]
    (graph,) = _preparation_session("as_captured", multiple).run(None, {"image": image[None, None]})
    host = _on_host(image, "as_captured", multiple)
    assert graph.shape[2:] == host.shape
    assert np.abs(graph[0, 0] - host).max() <= TOLERANCE


def test_a_blank_image_is_not_blown_up_into_noise(flattening: ort.InferenceSession) -> None:
    (graph,) = flattening.run(None, {"image": np.full((1, 1, 37, 29), 200, dtype=np.uint8)})
    assert np.array_equal(graph, np.zeros((1, 1, 40, 32), dtype=np.float32))


@pytest.fixture
def host_prepared(tmp_path: Path) -> Path:
    """The shipped model directory as the exporter leaves it, before preparation moves in."""
    manifest = load_manifest(SHIPPED)
    content = json.loads((SHIPPED / "manifest.json").read_text())
    int8 = manifest.int8_model()
    shas = {}
    for file in (manifest.file, int8.file):
        data = without_preparation(onnx.load(str(SHIPPED / file))).SerializeToString()
        (tmp_path / file).write_bytes(data)
        shas[file] = hashlib.sha256(data).hexdigest()
    content["sha256"] = shas[manifest.file]
    content["input"] |= {"dtype": "float32", "preparation": "host"}
    content["int8"] |= {"sha256": shas[int8.file], "quantised_from": shas[manifest.file]}
    (tmp_path / "manifest.json").write_text(json.dumps(content))
    return tmp_path


def _close(a: list[Minutia], b: list[Minutia]) -> bool:
    if len(a) != len(b):
        return False
    pairs = zip(a, b, strict=True)
    return all(
        m.kind == n.kind and abs(m.x - n.x) < 0.01 and abs(m.y - n.y) < 0.01 for m, n in pairs
    )


def test_moving_preparation_into_the_graph_keeps_the_minutiae(
    host_prepared: Path, tmp_path: Path
) -> None:
    images = [FingerGenerator(seed=9).impression_image(i, 0) for i in range(3)]
    before = MinutiaeExtractor.load(host_prepared)
    assert before.manifest.input.preparation == "host"
    found = [before.extract(image, 500.0) for image in images]
    assert main(["--model-dir", str(host_prepared), "--version", "9.9.9"]) == 0
    after = MinutiaeExtractor.load(host_prepared)  # the checksums hold
    assert after.manifest.version == "9.9.9"
    assert after.manifest.input.dtype == "uint8"
    assert all(_close(f, after.extract(i, 500.0)) for f, i in zip(found, images, strict=True))
    int8 = MinutiaeExtractor.load(host_prepared, precision="int8")
    assert int8.session.get_inputs()[0].type == "tensor(uint8)"
    content = json.loads((host_prepared / "manifest.json").read_text())
    assert content["int8"]["quantised_from"] == content["sha256"]
    assert content["preparation_moved_into_graph_by"].startswith(
        "python -m models.train.preparation --model-dir"
    )


def _network(model: onnx.ModelProto) -> list[tuple[str, list[str], list[str]]]:
    nodes = [n for n in model.graph.node if not n.name.startswith(PREFIX)]
    return [(n.op_type, list(n.input), list(n.output)) for n in nodes]


def _with_an_older_preparation(path: Path) -> None:
    """Stand in for an earlier version's preparation: one more node on the way out."""
    model = onnx.load(str(path))
    for node in model.graph.node:
        node.output[:] = [PREFIX + "earlier" if o == PREPARED else o for o in node.output]
    extra = helper.make_node("Identity", [PREFIX + "earlier"], [PREPARED], PREFIX + "old")
    model.graph.node.insert(0, extra)
    path.write_bytes(model.SerializeToString())


def test_a_graph_prepared_directory_gets_this_codes_preparation_and_keeps_its_network(
    host_prepared: Path, tmp_path: Path
) -> None:
    prepared = tmp_path / "graph"
    prepared.mkdir()
    for name in ("manifest.json", "minutiae.onnx", "minutiae.int8.onnx"):
        shutil.copy(SHIPPED / name, prepared / name)
    networks = {}
    for name in ("minutiae.onnx", "minutiae.int8.onnx"):
        networks[name] = _network(onnx.load(str(prepared / name)))
        _with_an_older_preparation(prepared / name)

    sha256 = prepare_model_dir(prepared, "9.9.10", "replace", None)

    nodes, _ = preparation_graph("image", PREPARED, "flattened", 8)
    for name, network in networks.items():
        model = onnx.load(str(prepared / name))
        assert _network(model) == network
        ours = [n.op_type for n in model.graph.node if n.name.startswith(PREFIX)]
        assert ours == [n.op_type for n in nodes]
    content = json.loads((prepared / "manifest.json").read_text())
    assert content["sha256"] == sha256 == content["int8"]["quantised_from"]
    assert content["preparation_replaced_by"] == "replace"
    # the same network prepared on the host by edge.preprocess finds what the new graph finds
    images = [FingerGenerator(seed=11).impression_image(i, 0) for i in range(2)]
    on_host = MinutiaeExtractor.load(host_prepared)
    after = MinutiaeExtractor.load(prepared)  # the checksums hold
    for image in images:
        assert _close(on_host.extract(image, 500.0), after.extract(image, 500.0))
    with pytest.raises(ValueError, match="already prepares"):
        with_preparation(onnx.load(str(prepared / "minutiae.onnx")), "flattened", 8)


def test_the_host_and_graph_paths_feed_the_model_what_its_manifest_says() -> None:
    spec = load_manifest(SHIPPED).input
    image = FingerGenerator(seed=1).impression_image(0, 0)
    tensor, _ = model_input(image, 500.0, spec)
    assert tensor.dtype == np.uint8 and tensor.shape == (1, 1, *image.shape)
    host = spec.model_copy(update={"dtype": "float32", "preparation": "host"})
    tensor, _ = model_input(image, 500.0, host)
    assert tensor.dtype == np.float32 and tensor.shape[2] % spec.size_multiple == 0


@pytest.mark.parametrize(("dtype", "preparation"), [("float32", "graph"), ("uint8", "host")])
def test_an_input_type_that_does_not_match_the_preparation_is_malformed(
    tmp_path: Path, dtype: str, preparation: str
) -> None:
    for name in ("manifest.json", "minutiae.onnx"):
        shutil.copy(SHIPPED / name, tmp_path / name)
    content = json.loads((tmp_path / "manifest.json").read_text())
    content["input"] |= {"dtype": dtype, "preparation": preparation}
    (tmp_path / "manifest.json").write_text(json.dumps(content))
    with pytest.raises(ManifestError, match="takes"):
        MinutiaeExtractor.load(tmp_path)


def test_quantisation_leaves_the_preparation_in_fp32() -> None:
    model = onnx.load(str(SHIPPED / "minutiae.onnx"))
    kept = set(fp32_nodes(model, Recipe()))
    preparation = {node.name for node in model.graph.node if node.name.startswith(PREFIX)}
    assert preparation and preparation <= kept
