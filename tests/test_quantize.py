"""models.train.quantize: calibrated int8 from the fp32 model, recorded in the manifest."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from int8_agreement import agreement
from onnxruntime.quantization import CalibrationMethod

import models
from edge.extraction import HEAD_CHANNELS, MinutiaeExtractor, load_manifest
from hil.fingers import FingerGenerator
from models.train.data import RawImage
from models.train.preparation import PREFIX as PREPARATION
from models.train.preparation import with_preparation, without_preparation
from models.train.quantize import (
    INT8_FILE,
    Recipe,
    calibration_tensors,
    fp32_nodes,
    main,
    quantize,
    quantize_model_dir,
    spread_choice,
)

SHIPPED = Path(models.__file__).parent
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def _synthetic(count: int, database: str = "SYNTH", seed: int = 11) -> list[RawImage]:
    generator = FingerGenerator(seed)
    no_labels = np.zeros((0, 5), dtype=np.float32)
    return [
        RawImage(f"{100 + i}_1", database, 500.0, generator.impression_image(i, 0), no_labels)
        for i in range(count)
    ]


def _fp32_copy(directory: Path) -> Path:
    """The shipped fp32 model and its manifest, without any int8 entry."""
    directory.mkdir()
    content = json.loads((SHIPPED / "manifest.json").read_text())
    content.pop("int8", None)
    (directory / "manifest.json").write_text(json.dumps(content, indent=2) + "\n")
    shutil.copy(SHIPPED / content["file"], directory / content["file"])
    return directory


@pytest.fixture(scope="module")
def quantised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = _fp32_copy(tmp_path_factory.mktemp("q") / "models")
    quantize_model_dir(directory, _synthetic(4), "python -m models.train.quantize (test)")
    return directory


def test_the_int8_model_is_recorded_in_the_manifest_and_the_rest_is_kept(quantised: Path) -> None:
    content = json.loads((quantised / "manifest.json").read_text())
    entry = content.pop("int8")
    before = json.loads((SHIPPED / "manifest.json").read_text())
    before.pop("int8", None)
    assert content == before
    data = (quantised / INT8_FILE).read_bytes()
    assert entry["file"] == INT8_FILE
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["quantised_from"] == before["sha256"]
    assert (entry["format"], entry["activations"], entry["weights"]) == ("QDQ", "QUInt8", "QInt8")
    assert entry["per_channel"] is True and entry["calibration"] == "MinMax"
    assert entry["quantised_operators"] == ["Conv", "Relu", "Add"]
    assert entry["kept_fp32"].startswith("the input preparation")
    assert entry["calibration_images"]["count"] == 4
    assert entry["calibration_images"]["names"] == [f"SYNTH/{100 + i}_1" for i in range(4)]
    assert entry["command"] == "python -m models.train.quantize (test)"
    assert stat.S_IMODE((quantised / INT8_FILE).stat().st_mode) == 0o644


def test_the_int8_model_loads_and_finds_nearly_what_fp32_finds(quantised: Path) -> None:
    int8 = MinutiaeExtractor.load(quantised, precision="int8")
    result = agreement(MinutiaeExtractor.load(quantised), int8)
    assert result.nearly_same, result


def test_quantising_again_gives_the_same_bytes(quantised: Path, tmp_path: Path) -> None:
    manifest = load_manifest(quantised)
    tensors = calibration_tensors(_synthetic(4), manifest.input)
    again = quantize(quantised / manifest.file, tmp_path / "again.onnx", "image", tensors)
    assert again == manifest.int8_model().sha256


def test_calibrating_on_blank_images_is_caught_by_the_agreement_check(tmp_path: Path) -> None:
    # Guards the tolerance: an int8 model calibrated on images without ridges must fail it.
    directory = _fp32_copy(tmp_path / "models")
    raw = [np.full((1, 1, 384, 288), level, dtype=np.uint8) for level in (90, 160, 200, 240)]
    manifest = load_manifest(directory)
    quantize(directory / manifest.file, directory / INT8_FILE, manifest.input.name, raw)
    sha256 = hashlib.sha256((directory / INT8_FILE).read_bytes()).hexdigest()
    content = json.loads((directory / "manifest.json").read_text())
    content["int8"] = {"file": INT8_FILE, "sha256": sha256, "quantised_from": manifest.sha256}
    (directory / "manifest.json").write_text(json.dumps(content))
    broken = MinutiaeExtractor.load(directory, precision="int8")
    assert not agreement(MinutiaeExtractor.load(directory), broken).nearly_same


def test_histogram_calibration_takes_images_of_different_sizes(tmp_path: Path) -> None:
    generator = FingerGenerator(seed=11)
    tensors = [
        generator.impression_image(0, 0, 256, 288)[None, None],
        generator.impression_image(1, 0, 320, 360)[None, None],
    ]
    recipe = Recipe(calibration=CalibrationMethod.Percentile)
    quantize(SHIPPED / "minutiae.onnx", tmp_path / "p.onnx", "image", tensors, recipe)
    onnx.checker.check_model(str(tmp_path / "p.onnx"))


def test_quantisation_needs_calibration_images(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one image"):
        quantize(SHIPPED / "minutiae.onnx", tmp_path / "x.onnx", "image", [])
    assert not (tmp_path / "x.onnx").exists()


def test_the_leading_convolutions_the_head_and_the_average_after_it_stay_fp32() -> None:
    network = without_preparation(onnx.load(str(SHIPPED / "minutiae.onnx")))
    model = with_preparation(network, "flattened", 8)  # this code's preparation
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    # the network's convolutions: the preparation before it has some of its own
    convs = [n for n in network.graph.node if n.op_type == "Conv"]
    assert len(convs) < sum(n.op_type == "Conv" for n in model.graph.node)
    # the head is the convolution that makes the seven output channels, wherever it sits
    (head,) = (n.name for n in convs if weights[n.input[1]][0] == len(HEAD_CHANNELS))
    stem, first_depthwise = convs[0].name, convs[1].name
    assert weights[convs[0].input[1]][1] == 1  # the stem reads the one-channel image
    kept = fp32_nodes(model, Recipe())
    assert {n for n in kept if n in {c.name for c in convs}} == {stem, first_depthwise, head}
    assert weights[convs[1].input[1]][1] == 1  # the first depthwise: one input channel per group
    # the half-turn average after the head: slices, products and the sum of the two views
    convolutions_kept = {stem, first_depthwise, head}
    after_head = [n for n in kept if n not in convolutions_kept and not n.startswith(PREPARATION)]
    names = [n.name for n in model.graph.node]
    assert after_head and all(names.index(n) > names.index(head) for n in after_head)
    # the input preparation before the network stays fp32 whatever the recipe
    bare = fp32_nodes(model, Recipe(leading_fp32=0, head_fp32=False))
    assert bare and all(n.startswith(PREPARATION) for n in bare)


def test_onnx_runtime_runs_in_int8_exactly_the_convolutions_the_recipe_quantises(
    quantised: Path, tmp_path: Path
) -> None:
    # ONNX Runtime turns a float convolution between quantised tensors into an int8 one of its
    # own when it loads a model; the recipe must leave none for it to find.
    fp32 = onnx.load(str(quantised / "minutiae.onnx"))
    convs = {n.name for n in fp32.graph.node if n.op_type == "Conv"}
    kept = convs & set(fp32_nodes(fp32, Recipe()))
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(quantised / INT8_FILE), options, providers=["CPUExecutionProvider"])
    operators = [n.op_type for n in onnx.load(str(tmp_path / "optimised.onnx")).graph.node]
    assert operators.count("QLinearConv") == len(convs) - len(kept)
    assert operators.count("Conv") == len(kept)
    # neither the image nor the heads are rounded on the way in or out
    int8 = onnx.load(str(quantised / INT8_FILE))
    (image,) = (i.name for i in int8.graph.input)
    (heads,) = (o.name for o in int8.graph.output)
    assert not [n for n in int8.graph.node if n.op_type == "QuantizeLinear" and image in n.input]
    assert not [n for n in int8.graph.node if n.op_type == "DequantizeLinear" and heads in n.output]


def test_calibration_images_are_spread_over_databases_and_repeat_with_the_seed() -> None:
    pixel, no_labels = np.zeros((1, 1), np.uint8), np.zeros((0, 5), np.float32)
    images = [
        RawImage(f"{100 + i // 8}_{i % 8 + 1}", database, 500.0, pixel, no_labels)
        for database in ("DB1_B", "DB2_B", "DB3_B", "DB4_B")
        for i in range(80)
    ]
    chosen = spread_choice(images, 48, seed=7)
    assert len(chosen) == 48 and len({(c.database, c.name) for c in chosen}) == 48
    for database in ("DB1_B", "DB2_B", "DB3_B", "DB4_B"):
        names = sorted(c.name for c in chosen if c.database == database)
        assert len(names) == 12
        assert len({n.split("_")[0] for n in names}) >= 8  # most of the ten fingers
    assert spread_choice(images, 48, seed=7) == chosen
    assert spread_choice(images, 48, seed=8) != chosen
    assert len(spread_choice(images, 6, seed=7)) == 6
    assert len(spread_choice(images[:3], 10, seed=7)) == 3  # cannot give more than there are
    with pytest.raises(ValueError, match="at least one"):
        spread_choice(images, 0, seed=7)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the development corpus is not here")
def test_the_command_quantises_on_corpus_images_and_records_how(tmp_path: Path) -> None:
    directory = _fp32_copy(tmp_path / "models")
    args = ["--model-dir", str(directory), "--corpus", str(CORPUS), "--images", "4"]
    assert main([*args, "--databases", "DB1_B", "DB3_B"]) == 0
    entry = json.loads((directory / "manifest.json").read_text())["int8"]
    assert entry["calibration_images"]["count"] == 4
    assert {n.split("/")[0] for n in entry["calibration_images"]["names"]} == {"DB1_B", "DB3_B"}
    assert entry["command"].endswith("--images 4 --seed 20021 --databases DB1_B DB3_B")
    MinutiaeExtractor.load(directory, precision="int8")


def _activation_scales(path: Path) -> dict[str, float]:
    """Scale of every activation QuantizeLinear (weights are per channel and stored apart)."""
    model = onnx.load(str(path))
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    return {
        node.input[0]: float(initializers[node.input[1]])
        for node in model.graph.node
        if node.op_type == "QuantizeLinear" and node.input[0] not in initializers
    }


def test_mean_ranges_give_no_activation_a_coarser_step_than_the_widest_ranges(
    quantised: Path, tmp_path: Path
) -> None:
    # ``quantised`` is the default recipe (mean ranges) on these same four images
    manifest = load_manifest(quantised)
    tensors = calibration_tensors(_synthetic(4), manifest.input)
    fp32 = quantised / manifest.file
    quantize(fp32, tmp_path / "widest.onnx", "image", tensors, Recipe(mean_ranges=False))
    mean = _activation_scales(quantised / INT8_FILE)
    widest = _activation_scales(tmp_path / "widest.onnx")
    assert mean.keys() == widest.keys() and mean
    assert all(mean[name] <= widest[name] * (1 + 1e-6) for name in mean)
    assert any(mean[name] < 0.95 * widest[name] for name in mean)
