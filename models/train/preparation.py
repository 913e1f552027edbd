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
weights as they were. With ``--finger-box`` the graph also cuts the prepared image to the finger's
box (``finger_box_graph``), runs the network on that alone, and puts its heads back into the whole
image's grid (``restoring_graph``), so that the network's cost can follow the finger rather than
the platen (at the default settings it saved no time on FVC2002 DB1: see the model card).
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

from edge.extraction import (
    MANIFEST_NAME,
    Background,
    FingerBoxSpec,
    ModelError,
    load_manifest,
)
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
WHOLE = PREFIX + "whole"  # with a finger box: the prepared image before it is cut to the box
HEADS = PREFIX + "heads"  # with a finger box: the network's heads for the box alone
BOX_PADS = PREFIX + "box/pads"  # with a finger box: cells from the box's heads to the image's
# the logit a finger box's graph gives every head outside the box: sigmoid(-30) is 1e-13, so
# no cell there is a minutia or on the finger whatever the decoding's thresholds
NO_MINUTIA = -30.0
# the finger box a model gets unless told otherwise: chosen before any figure was seen with it
DEFAULT_FINGER_BOX = FingerBoxSpec(min_spread=0.3, margin=32)
_LAST = np.iinfo(np.int64).max  # a Slice end meaning "to the end"


class _Graph:
    """Nodes and constants of the preparation, with names under ``PREFIX``."""

    def __init__(self, stem: str = "") -> None:
        self.stem = PREFIX + stem
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def _name(self, kind: str) -> str:
        return f"{self.stem}{kind}_{len(self.nodes) + len(self.initializers)}"

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


def finger_box_graph(
    prepared: str, output: str, box: FingerBoxSpec, cell: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes that cut the prepared image ``prepared`` (sides whole ``cell``s) to the finger's box
    as ``output``, and give ``BOX_PADS``, the cells around the box in ONNX Pad's order.

    The box is the rows and columns of cells whose values spread by more than
    ``box.min_spread`` (the whole image's spread is 1 after standardising), widened by
    ``box.margin`` pixels and kept inside the image; with no such cell it is the whole image.
    The cut keeps the whole image's standardisation, as the network's training crops do."""
    if box.margin % cell:
        raise ValueError(f"the finger box's margin must be whole cells of {cell} pixels")
    g = _Graph("box/")
    pool: dict[str, Any] = {"kernel_shape": [cell, cell], "strides": [cell, cell]}
    mean = g.op("AveragePool", prepared, **pool)
    square = g.op("AveragePool", g.op("Mul", prepared, prepared), **pool)
    variance = g.op("Sub", square, g.op("Mul", mean, mean))
    limit = g.const(box.min_spread**2, np.float32)
    textured = g.op("Cast", g.op("Greater", variance, limit), to=TensorProto.FLOAT)
    grid = g.op("Shape", mean)  # 1, 1, rows, cols
    reach = g.const([box.margin // cell], np.int64)
    one = g.const([1], np.int64)
    starts, ends, after = [], [], []
    for axis, across in ((2, 3), (3, 2)):
        lines = g.op("ReduceMax", textured, axes=[across], keepdims=0)  # 1, 1, cells
        # the first and last textured cells; with none, ArgMax gives 0 and the last cell
        first = g.op("ArgMax", lines, axis=2, keepdims=0)
        last = g.op("ArgMax", lines, axis=2, keepdims=0, select_last_index=1)
        first, last = (g.op("Reshape", line, one) for line in (first, last))
        count = g.slice(grid, axis, axis + 1, 0)
        start = g.op("Max", g.op("Sub", first, reach), g.const([0], np.int64))
        end = g.op("Min", g.op("Add", g.op("Add", last, one), reach), count)
        starts.append(start)
        ends.append(end)
        after.append(g.op("Sub", count, end))
    width = g.const([cell], np.int64)
    pixels = [g.op("Mul", g.op("Concat", *cells, axis=0), width) for cells in (starts, ends)]
    g.op("Slice", prepared, *pixels, g.const([2, 3], np.int64), output=output)
    zeros = g.const([0, 0], np.int64)
    g.op("Concat", zeros, *starts, zeros, *after, axis=0, output=BOX_PADS)
    return g.nodes, g.initializers


def restoring_graph(heads: str, output: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes that put the box's ``heads`` back into the whole image's grid as ``output``, every
    cell outside the box saying no minutia and not on the finger."""
    g = _Graph("restore/")
    g.op("Pad", heads, BOX_PADS, g.const(NO_MINUTIA, np.float32), output=output)
    return g.nodes, g.initializers


def prepares_input(model: onnx.ModelProto) -> bool:
    """Whether ``model``'s graph holds a preparation in front of its network."""
    return any(node.name.startswith(PREFIX) for node in model.graph.node)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copied = onnx.ModelProto()
    copied.CopyFrom(model)
    return copied


def with_preparation(
    network: onnx.ModelProto,
    background: Background,
    size_multiple: int,
    finger_box: FingerBoxSpec | None = None,
) -> onnx.ModelProto:
    """A copy of ``network`` (float input) behind the preparation graph, taking a uint8 image;
    with ``finger_box``, the network runs on the finger's box alone."""
    network = _copy(network)
    graph = network.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ValueError("expected a network with one input and one output")
    if prepares_input(network):
        raise ValueError("the network already prepares its input")
    source = graph.input[0]
    for node in graph.node:
        node.input[:] = [PREPARED if name == source.name else name for name in node.input]
    whole = PREPARED if finger_box is None else WHOLE
    nodes, initializers = preparation_graph(source.name, whole, background, size_multiple)
    after: list[onnx.NodeProto] = []
    if finger_box is not None:
        box_nodes, box_constants = finger_box_graph(WHOLE, PREPARED, finger_box, size_multiple)
        heads = graph.output[0].name
        for node in graph.node:
            node.output[:] = [HEADS if name == heads else name for name in node.output]
        after, restore_constants = restoring_graph(HEADS, heads)
        nodes += box_nodes
        initializers += box_constants + restore_constants
    dims = source.type.tensor_type.shape.dim
    image = helper.make_tensor_value_info(
        source.name, TensorProto.UINT8, [d.dim_param or d.dim_value for d in dims]
    )
    merged = helper.make_graph(
        nodes + list(graph.node) + after,
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
    model.metadata_props.extend(network.metadata_props)  # the quantiser's record, for one
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
    heads = graph.output[0].name
    network = [node for node in graph.node if not node.name.startswith(PREFIX)]
    for node in network:
        node.input[:] = [source.name if name == PREPARED else name for name in node.input]
        node.output[:] = [heads if name == HEADS else name for name in node.output]
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


def input_spec(
    name: str,
    background: Background,
    size_multiple: int,
    finger_box: FingerBoxSpec | None = None,
) -> dict[str, Any]:
    """The manifest's ``input`` for a network behind the preparation graph."""
    levels = (
        "divides out the background (grey level * 255 / local valley brightness, as "
        "edge.preprocess.flatten_background), "
        if background == "flattened"
        else ""
    )
    spec: dict[str, Any] = {
        "name": name,
        "layout": "NCHW",
        "dtype": "uint8",
        "normalisation": "image resampled (bilinear) to target_ppi on the host; the graph "
        "itself (models.train.preparation) "
        + levels
        + "standardises ((pixel - mean(image)) / max(std(image), 1)) and zero-pads "
        "bottom/right to a multiple of size_multiple"
        + (
            "; the network then runs on the finger's box only (finger_box: the cells whose "
            "standardised values spread by more than min_spread, widened by margin pixels), "
            "and every head outside it is a logit of -30"
            if finger_box is not None
            else ""
        ),
        "target_ppi": 500.0,
        "size_multiple": size_multiple,
        "background": background,
        "preparation": "graph",
    }
    if finger_box is not None:
        spec["finger_box"] = finger_box.model_dump()
    return spec


def prepare_file(
    path: Path,
    background: Background,
    size_multiple: int,
    finger_box: FingerBoxSpec | None = None,
) -> str:
    """Rewrite the ONNX network at ``path`` behind this code's preparation, in place of the one
    it has if any; returns its sha256."""
    model = onnx.load(str(path))
    if prepares_input(model):
        model = without_preparation(model)
    data = with_preparation(model, background, size_multiple, finger_box).SerializeToString()
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    os.chmod(partial, 0o644)  # a model holds no personal data
    os.replace(partial, path)
    return hashlib.sha256(data).hexdigest()


def prepare_model_dir(
    model_dir: Path, version: str | None, command: str, finger_box: FingerBoxSpec | None
) -> str:
    """Put this code's input preparation in a model directory's graphs, fp32 and int8 alike,
    moving it from the host or replacing an earlier graph's, and record it in the manifest;
    returns the fp32 model's new sha256. The network's operators and weights are untouched.
    With ``finger_box`` the network runs on the finger's box only."""
    manifest = load_manifest(model_dir)
    spec = manifest.input
    int8 = manifest.int8_model() if manifest.int8 is not None else None
    if int8 is not None and int8.quantised_from != manifest.sha256:
        raise ValueError(f"{model_dir / MANIFEST_NAME}: the int8 model is stale")
    if finger_box is not None and manifest.decoding.cell_size != spec.size_multiple:
        raise ValueError("a finger box needs the heads' cell size to be size_multiple")
    shape = (spec.background, spec.size_multiple, finger_box)
    sha256 = prepare_file(model_dir / manifest.file, *shape)
    content = json.loads((model_dir / MANIFEST_NAME).read_text())
    content["sha256"] = sha256
    content["input"] = input_spec(spec.name, *shape)
    if version is not None:
        content["version"] = version
    moved = spec.preparation == "host"
    content["preparation_moved_into_graph_by" if moved else "preparation_replaced_by"] = command
    if int8 is not None:
        int8_sha256 = prepare_file(model_dir / int8.file, *shape)
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
    box = parser.add_mutually_exclusive_group()
    box.add_argument(
        "--finger-box",
        action="store_true",
        help="run the network on the finger's box only (default: as the manifest says)",
    )
    box.add_argument(
        "--whole-image", action="store_true", help="run the network on the whole image"
    )
    parser.add_argument(
        "--box-min-spread",
        type=float,
        default=DEFAULT_FINGER_BOX.min_spread,
        help="with --finger-box: a cell's least spread of standardised values "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--box-margin",
        type=int,
        default=DEFAULT_FINGER_BOX.margin,
        help="with --finger-box: pixels around the cells, whole cells (default %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        command = "python -m models.train.preparation " + shlex.join(
            sys.argv[1:] if argv is None else argv
        )
        finger_box = load_manifest(args.model_dir).input.finger_box
        if args.finger_box:
            finger_box = FingerBoxSpec(min_spread=args.box_min_spread, margin=args.box_margin)
        elif args.whole_image:
            finger_box = None
        sha256 = prepare_model_dir(args.model_dir, args.version, command, finger_box)
    except (ValueError, OSError, ModelError) as exc:  # pydantic's ValidationError included
        parser.error(str(exc))
    print(f"{args.model_dir}: preparation in the graph (sha256 {sha256})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
