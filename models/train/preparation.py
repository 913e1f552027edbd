"""The extractor's input preparation as ONNX operators, put in front of the exported network.

``edge.preprocess`` prepares an image in about a dozen full-size numpy passes (1.3-3.2 ms of a
388 x 374 extraction on the build machine); ONNX Runtime runs the same arithmetic in one call
and without the interpreter between the passes. The graph takes the resampled uint8 image and
reproduces ``flatten_background`` then ``standardise`` to float rounding: the background level is
smoothed with the same Gaussian taps (``edge.preprocess.smoothing_taps``), and the image's mean and
variance are summed by rows in float32 and then in double here, pairwise in float32 by numpy.

    python -m models.train.preparation --model-dir DIR

moves an exported model directory's preparation into its graphs (fp32 and, when listed, int8),
or replaces the preparation they have with this module's, leaving the network's operators and
weights as they were.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.extraction import MANIFEST_NAME, Background, ModelError, load_manifest
from edge.preprocess import (
    BACKGROUND_BLOCK,
    BACKGROUND_REACH,
    MIN_STD,
    SMOOTHING_REACH,
    smoothing_taps,
)
from models.train.manifest_file import write_manifest

PREFIX = "prepare/"  # every node and initializer of the preparation is named under it
PREPARED = PREFIX + "output"  # the preparation's result, the network's input
_LAST = np.iinfo(np.int64).max  # a Slice end meaning "to the end"


class _Graph:
    """Nodes and constants of the preparation, with names under ``PREFIX``."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def _name(self, kind: str) -> str:
        return f"{PREFIX}{kind}_{len(self.nodes) + len(self.initializers)}"

    def const(self, value: Any, dtype: type) -> str:
        name = self._name("const")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attrs: Any) -> str:
        name = self._name(op_type)
        out = output if output is not None else name
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=name, **attrs))
        return out

    def slice(self, x: str, start: int, end: int, axis: int) -> str:
        return self.op(
            "Slice",
            x,
            self.const([start], np.int64),
            self.const([end], np.int64),
            self.const([axis], np.int64),
        )


def _background_gain(g: _Graph, image: str) -> str:
    """255 over the smoothed local valley level, one value per background block (float)."""
    block, reach = BACKGROUND_BLOCK, BACKGROUND_REACH
    # MaxPool leaves out what lies past the edge, as repeating the edge would for a maximum.
    tiles = g.op("MaxPool", image, kernel_shape=[block, block], strides=[block, block], ceil_mode=1)
    window = 2 * reach + 1
    # one window in two passes, a row then a column, costs less than the square at once
    across = g.op("MaxPool", tiles, kernel_shape=[1, window], pads=[0, reach, 0, reach])
    level = g.op("MaxPool", across, kernel_shape=[window, 1], pads=[reach, 0, reach, 0])
    taps = smoothing_taps()
    pads = [0, 0, SMOOTHING_REACH, SMOOTHING_REACH] * 2
    padded = g.op("Pad", level, g.const(pads, np.int64), mode="edge")
    rows = g.op("Conv", padded, g.const(taps.reshape(1, 1, 1, -1), np.float32))
    smooth = g.op("Conv", rows, g.const(taps.reshape(1, 1, -1, 1), np.float32))
    brightness = g.op("Max", smooth, g.const(1.0, np.float32))
    return g.op("Div", g.const(255.0, np.float32), brightness)


def _upsample(g: _Graph, grid: str, factor: int, axis: int) -> str:
    """``edge.preprocess._upsample`` term for term: bilinear, cell centre to pixel centre."""
    pads = [0] * 8
    pads[axis] = pads[axis + 4] = 1
    padded = g.op("Pad", grid, g.const(pads, np.int64), mode="edge")
    below = g.slice(padded, 0, -2, axis)
    centre = g.slice(padded, 1, -1, axis)
    above = g.slice(padded, 2, _LAST, axis)
    to_below = g.op("Sub", below, centre)
    to_above = g.op("Sub", above, centre)
    phases = []
    for k in range(factor):
        shift = (k + 0.5) / factor - 0.5
        step = g.op("Mul", g.const(abs(shift), np.float32), to_below if shift < 0 else to_above)
        phase = g.op("Add", centre, step)
        phases.append(g.op("Unsqueeze", phase, g.const([axis + 1], np.int64)))
    stacked = g.op("Concat", *phases, axis=axis + 1)
    shape = g.op("Shape", centre)
    longer = g.op("Mul", g.slice(shape, axis, axis + 1, 0), g.const([factor], np.int64))
    parts = [g.slice(shape, 0, axis, 0), longer]
    if axis + 1 < 4:
        parts.append(g.slice(shape, axis + 1, 4, 0))
    return g.op("Reshape", stacked, g.op("Concat", *parts, axis=0))


def _mean(g: _Graph, x: str) -> str:
    """The mean of ``x``: each row's in float32, then theirs in double (cheaper than casting
    every pixel to double)."""
    rows = g.op("ReduceMean", x, axes=[3], keepdims=1)
    mean = g.op("ReduceMean", g.op("Cast", rows, to=TensorProto.DOUBLE), axes=[2], keepdims=1)
    return g.op("Cast", mean, to=TensorProto.FLOAT)


def preparation_graph(
    input_name: str, output_name: str, background: Background, size_multiple: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes from a 1 x 1 x H x W uint8 image ``input_name`` to the network's float input
    ``output_name``, as ``edge.extraction.model_input`` prepares it on the host."""
    g = _Graph()
    sides = g.slice(g.op("Shape", input_name), 2, 4, 0)  # height, width
    levels = g.op("Cast", input_name, to=TensorProto.FLOAT)
    if background == "flattened":
        gain = _background_gain(g, levels)
        for axis in (2, 3):
            gain = _upsample(g, gain, BACKGROUND_BLOCK, axis)
        gain = g.op("Slice", gain, g.const([0, 0], np.int64), sides, g.const([2, 3], np.int64))
        levels = g.op("Min", g.op("Mul", levels, gain), g.const(255.0, np.float32))
    # one float32 sum over the whole image in ONNX Runtime's order drifted from numpy's pairwise
    # ones by up to 5e-4 of a standard deviation on corpus images; rows in float32, then their
    # means in double, agree to float rounding, as the whole image in double did
    centred = g.op("Sub", levels, _mean(g, levels))
    variance = _mean(g, g.op("Mul", centred, centred))
    spread = g.op("Max", g.op("Sqrt", variance), g.const(MIN_STD, np.float32))
    standard = g.op("Div", centred, spread)
    # bottom and right padding up to the multiple: (-side) mod multiple, Python's sign rule
    short = g.op("Mod", g.op("Neg", sides), g.const(size_multiple, np.int64))
    pads = g.op("Concat", g.const([0] * 6, np.int64), short, axis=0)
    g.op("Pad", standard, pads, g.const(0.0, np.float32), output=output_name)
    return g.nodes, g.initializers


def prepares_input(model: onnx.ModelProto) -> bool:
    """Whether ``model``'s graph holds a preparation in front of its network."""
    return any(node.name.startswith(PREFIX) for node in model.graph.node)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    return copied


def with_preparation(
    network: onnx.ModelProto, background: Background, size_multiple: int
) -> onnx.ModelProto:
    """A copy of ``network`` (float input) behind the preparation graph, taking a uint8 image."""
    network = _copy(network)
    graph = network.graph
    if len(graph.input) != 1:
        raise ValueError(f"expected a network with one input, it has {len(graph.input)}")
    if prepares_input(network):
        raise ValueError("the network already prepares its input")
    source = graph.input[0]
    for node in graph.node:
        node.input[:] = [PREPARED if name == source.name else name for name in node.input]
    nodes, initializers = preparation_graph(source.name, PREPARED, background, size_multiple)
    dims = source.type.tensor_type.shape.dim
    image = helper.make_tensor_value_info(
        source.name, TensorProto.UINT8, [d.dim_param or d.dim_value for d in dims]
    )
    merged = helper.make_graph(
        nodes + list(graph.node),
        graph.name,
        [image],
        list(graph.output),
        initializers + list(graph.initializer),
        value_info=list(graph.value_info),
    )
    model = helper.make_model(
        merged,
        opset_imports=list(network.opset_import),
        ir_version=network.ir_version,
        producer_name=network.producer_name,
        producer_version=network.producer_version,
    )
    onnx.checker.check_model(model)
    return model


def without_preparation(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with its preparation graph taken off: the network, taking the
    prepared float input under the image input's name."""
    model = _copy(model)
    graph = model.graph
    if not prepares_input(model):
        raise ValueError("the model does not prepare its input")
    source = graph.input[0]
    network = [node for node in graph.node if not node.name.startswith(PREFIX)]
    for node in network:
        node.input[:] = [source.name if name == PREPARED else name for name in node.input]
    del graph.node[:]
    graph.node.extend(network)
    weights = [t for t in graph.initializer if not t.name.startswith(PREFIX)]
    del graph.initializer[:]
    graph.initializer.extend(weights)
    # a quantiser's shape inference records the preparation's tensors too; a new preparation
    # may reuse their names for other types
    known = [v for v in graph.value_info if not v.name.startswith(PREFIX)]
    del graph.value_info[:]
    graph.value_info.extend(known)
    source.type.tensor_type.elem_type = TensorProto.FLOAT
    onnx.checker.check_model(model)
    return model


def input_spec(name: str, background: Background, size_multiple: int) -> dict[str, Any]:
    """The manifest's ``input`` for a network behind the preparation graph."""
    levels = (
        "divides out the background (grey level * 255 / local valley brightness, as "
        "edge.preprocess.flatten_background), "
        if background == "flattened"
        else ""
    )
    return {
        "name": name,
        "layout": "NCHW",
        "dtype": "uint8",
        "normalisation": "image resampled (bilinear) to target_ppi on the host; the graph "
        "itself (models.train.preparation) "
        + levels
        + "standardises ((pixel - mean(image)) / max(std(image), 1)) and zero-pads "
        "bottom/right to a multiple of size_multiple",
        "target_ppi": 500.0,
        "size_multiple": size_multiple,
        "background": background,
        "preparation": "graph",
    }


def prepare_file(path: Path, background: Background, size_multiple: int) -> str:
    """Rewrite the ONNX network at ``path`` behind this code's preparation, in place of the one
    it has if any; returns its sha256."""
    model = onnx.load(str(path))
    if prepares_input(model):
        model = without_preparation(model)
    data = with_preparation(model, background, size_multiple).SerializeToString()
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    os.chmod(partial, 0o644)  # a model holds no personal data
    os.replace(partial, path)
    return hashlib.sha256(data).hexdigest()


def prepare_model_dir(model_dir: Path, version: str | None, command: str) -> str:
    """Put this code's input preparation in a model directory's graphs, fp32 and int8 alike,
    moving it from the host or replacing an earlier graph's, and record it in the manifest;
    returns the fp32 model's new sha256. The network's operators and weights are untouched."""
    manifest = load_manifest(model_dir)
    spec = manifest.input
    int8 = manifest.int8_model() if manifest.int8 is not None else None
    if int8 is not None and int8.quantised_from != manifest.sha256:
        raise ValueError(f"{model_dir / MANIFEST_NAME}: the int8 model is stale")
    sha256 = prepare_file(model_dir / manifest.file, spec.background, spec.size_multiple)
    content = json.loads((model_dir / MANIFEST_NAME).read_text())
    content["sha256"] = sha256
    content["input"] = input_spec(spec.name, spec.background, spec.size_multiple)
    if version is not None:
        content["version"] = version
    moved = spec.preparation == "host"
    content["preparation_moved_into_graph_by" if moved else "preparation_replaced_by"] = command
    if int8 is not None:
        int8_sha256 = prepare_file(model_dir / int8.file, spec.background, spec.size_multiple)
        content["int8"] = {**content["int8"], "sha256": int8_sha256, "quantised_from": sha256}
    write_manifest(model_dir / MANIFEST_NAME, content)
    return sha256


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.train.preparation",
        description="Put this code's input preparation into a model directory's ONNX graphs "
        "(from the host, or in place of an earlier graph's).",
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="holds manifest.json")
    parser.add_argument("--version", help="the manifest's new version (the files change)")
    args = parser.parse_args(argv)
    try:
        command = "python -m models.train.preparation " + shlex.join(
            sys.argv[1:] if argv is None else argv
        )
        sha256 = prepare_model_dir(args.model_dir, args.version, command)
    except (ValueError, OSError, ModelError) as exc:
        parser.error(str(exc))
    print(f"{args.model_dir}: preparation in the graph (sha256 {sha256})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
