"""Static int8 quantisation of the minutiae model, calibrated on FVC2002 images.

    python -m models.train.quantize --model-dir models/ --corpus ../shared/corpus [--images 48]

Writes ``minutiae.int8.onnx`` beside the fp32 model and an ``int8`` entry (file, sha256, how
it was made) into its ``manifest.json``, leaving the rest of the manifest as it was.
Calibration images are prepared exactly as the extractor prepares them
(``edge.extraction.model_input``). Needs onnxruntime, onnx and numpy, not torch.

The ``Recipe`` defaults were chosen by measurement (models/MODEL_CARD.md). onnxruntime's
``quant_pre_process`` changed neither accuracy nor speed of this graph (the export already folds
batch norm), so it is not run and onnxruntime's warning suggesting it can be ignored.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from edge.extraction import MANIFEST_NAME, InputSpec, load_manifest, model_input
from models.train.data import DATABASE_PPI, RawImage, load_raw_corpus
from models.train.manifest_file import write_manifest
from models.train.preparation import PREFIX as PREPARATION

INT8_FILE = "minutiae.int8.onnx"
# The network's own operators. Left to itself the quantiser would also round the image on its
# way to the stem and the heads through the half-turn average's slices, products and sum.
QUANTISED_OPERATORS = ("Conv", "Relu", "Add")
DEFAULT_IMAGES = 48
DEFAULT_SEED = 20021


@dataclass(frozen=True)
class Recipe:
    """How the model is quantised; the defaults are the choice measured best (MODEL_CARD.md)."""

    activation_type: QuantType = QuantType.QUInt8
    weight_type: QuantType = QuantType.QInt8
    per_channel: bool = True
    calibration: CalibrationMethod = CalibrationMethod.MinMax
    # MinMax only: each tensor's range is the mean of the calibration images' own minima and
    # maxima, not the widest of them. One unusual image then no longer coarsens every step; it
    # reproduced the fp32 model best on every held-out run's training databases (MODEL_CARD.md).
    mean_ranges: bool = True
    # The first convolutions on the image's path stay fp32 (the stem and the depthwise one
    # after it, at full and half resolution): ONNX Runtime's int8 stem moved presence logits near
    # the threshold by 1.1 on average, and the int8 depthwise one was slower and less accurate.
    leading_fp32: int = 2
    # The head's seven channels (logits, offsets, cos/sin) span different ranges that one
    # activation scale would have to share; what the graph computes from them (the half-turn
    # average) stays fp32 with it.
    head_fp32: bool = True

    def describe(self) -> dict[str, Any]:
        ranges = {}
        if self.calibration == CalibrationMethod.MinMax:
            ranges["calibration_ranges"] = (
                "mean of the images' own minima and maxima" if self.mean_ranges else "widest"
            )
        return {
            "method": "onnxruntime.quantization.quantize_static",
            "format": "QDQ",
            "activations": self.activation_type.name,
            "weights": self.weight_type.name,
            "per_channel": self.per_channel,
            "calibration": self.calibration.name,
            **ranges,
            "quantised_operators": list(QUANTISED_OPERATORS),
            "kept_fp32": "; ".join(
                ["the input preparation, where the graph has one (models.train.preparation)"]
                + [f"the first {self.leading_fp32} convolutions on the image's path"]
                * bool(self.leading_fp32)
                + ["the output convolution (head) and what follows it"] * self.head_fp32
            ),
        }


def fp32_nodes(model: onnx.ModelProto, recipe: Recipe) -> list[str]:
    """Names of the nodes ``recipe`` keeps in fp32: the leading convolutions, the head and
    every node after it.

    Every other convolution is quantised, narrow depthwise ones too: ONNX Runtime turns a float
    convolution between quantised tensors into an int8 one itself when it loads the model (with
    weights rounded as it sees fit), so leaving one out there only made it less accurate.
    """
    nodes = list(model.graph.node)
    producer = {tensor: i for i, node in enumerate(nodes) for tensor in node.output}
    inputs = [{producer[t] for t in node.input if t in producer} for node in nodes]
    users: list[set[int]] = [set() for _ in nodes]
    for i, sources in enumerate(inputs):
        for source in sources:
            users[source].add(i)
    # the input preparation's arithmetic (models.train.preparation) is exact, or nearly, in fp32;
    # its own convolutions (the background's smoothing) are not the network's
    preparation = {i for i, node in enumerate(nodes) if node.name.startswith(PREPARATION)}
    convolutions = [
        i for i, node in enumerate(nodes) if node.op_type == "Conv" and i not in preparation
    ]
    network_convolutions = set(convolutions)

    def count(indices: set[int]) -> int:
        return len(indices & network_convolutions)

    kept = set(preparation)
    kept |= {i for i in convolutions if count(_closure(i, inputs)) < recipe.leading_fp32}
    if recipe.head_fp32:
        heads = {i for i in convolutions if not count(_closure(i, users))}
        kept |= heads.union(*(_closure(i, users) for i in heads))
    return [nodes[i].name for i in sorted(kept)]


def _closure(start: int, edges: list[set[int]]) -> set[int]:
    """The nodes reached from node ``start`` along ``edges`` (to its inputs' producers, or to
    its outputs' users), not counting ``start`` itself."""
    found: set[int] = set()
    pending = list(edges[start])
    while pending:
        node = pending.pop()
        if node not in found:
            found.add(node)
            pending.extend(edges[node])
    return found


class _Tensors(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime is untyped
    """Calibration inputs for ONNX Runtime, which asks for them one range at a time."""

    def __init__(self, input_name: str, tensors: Sequence[NDArray[Any]]) -> None:
        self._input_name = input_name
        self._tensors = tensors
        self._next, self._end = 0, len(tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, end_index

    def get_next(self) -> dict[str, NDArray[Any]] | None:
        if self._next >= self._end:
            return None
        self._next += 1
        return {self._input_name: self._tensors[self._next - 1]}


def _calibration_options(recipe: Recipe) -> dict[str, Any]:
    if recipe.calibration == CalibrationMethod.MinMax:
        # It reduces each image to a range inside the graph, so sizes may differ. With one pass
        # over the images, ONNX Runtime's "moving average" is the plain mean of their ranges.
        return {"CalibMovingAverage": True} if recipe.mean_ranges else {}
    # The histogram calibrators stack a pass's tensors, and the images differ in size.
    return {"CalibStridedMinMax": 1}


def calibration_tensors(images: Sequence[RawImage], spec: InputSpec) -> list[NDArray[Any]]:
    """Model inputs for ``images``, through the extractor's own preparation."""
    return [model_input(image.pixels, image.ppi, spec)[0] for image in images]


def quantize(
    fp32: Path,
    int8: Path,
    input_name: str,
    tensors: Sequence[NDArray[Any]],
    recipe: Recipe = Recipe(),
) -> str:
    """Quantise ``fp32`` into ``int8``, calibrated on ``tensors``; returns the new file's sha256."""
    if not tensors:
        raise ValueError("calibration needs at least one image")
    keep = fp32_nodes(onnx.load(str(fp32)), recipe)
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch:
        target = Path(scratch) / "int8.onnx"
        quantize_static(
            str(fp32),
            str(target),
            _Tensors(input_name, tensors),
            quant_format=QuantFormat.QDQ,
            per_channel=recipe.per_channel,
            activation_type=recipe.activation_type,
            weight_type=recipe.weight_type,
            calibrate_method=recipe.calibration,
            nodes_to_exclude=keep,
            op_types_to_quantize=list(QUANTISED_OPERATORS),
            extra_options=_calibration_options(recipe),
        )
        data = target.read_bytes()
    int8.parent.mkdir(parents=True, exist_ok=True)
    partial = int8.with_suffix(".partial")
    partial.write_bytes(data)
    os.chmod(partial, 0o644)  # a model holds no personal data
    os.replace(partial, int8)
    return hashlib.sha256(data).hexdigest()


def spread_choice(images: Sequence[RawImage], count: int, seed: int) -> list[RawImage]:
    """``count`` images shared evenly among the databases, one drawn (seeded) per equal stretch
    of each database's sorted images, so every finger range is represented."""
    if count < 1:
        raise ValueError(f"need at least one calibration image, asked for {count}")
    by_database: dict[str, list[RawImage]] = {}
    for image in sorted(images, key=lambda i: (i.database, i.name)):
        by_database.setdefault(image.database, []).append(image)
    rng = np.random.default_rng(seed)
    chosen: list[RawImage] = []
    for n, members in enumerate(by_database.values()):
        share = count // len(by_database) + (n < count % len(by_database))
        edges = np.linspace(0, len(members), min(share, len(members)) + 1).astype(int)
        chosen += [members[int(rng.integers(a, b))] for a, b in itertools.pairwise(edges)]
    return chosen


def quantize_model_dir(
    model_dir: Path,
    calibration: Sequence[RawImage],
    command: str,
    recipe: Recipe = Recipe(),
) -> str:
    """Quantise the manifest's fp32 model and record the result in the manifest's ``int8``."""
    manifest = load_manifest(model_dir)
    tensors = calibration_tensors(calibration, manifest.input)
    sha256 = quantize(
        model_dir / manifest.file, model_dir / INT8_FILE, manifest.input.name, tensors, recipe
    )
    path = model_dir / MANIFEST_NAME
    content = json.loads(path.read_text())
    databases = sorted({image.database for image in calibration})
    content["int8"] = {
        "file": INT8_FILE,
        "sha256": sha256,
        "quantised_from": manifest.sha256,
        **recipe.describe(),
        "calibration_images": {
            "count": len(calibration),
            "source": "FVC2002 " + ", ".join(databases) + ", prepared as the extractor does",
            "names": [f"{image.database}/{image.name}" for image in calibration],
        },
        "command": command,
    }
    write_manifest(path, content)
    return sha256


def quantize_from_corpus(
    model_dir: Path,
    corpus: Path,
    databases: Sequence[str] = tuple(sorted(DATABASE_PPI)),
    images: int = DEFAULT_IMAGES,
    seed: int = DEFAULT_SEED,
) -> str:
    """The CLI's work, also run at the end of training: returns the int8 model's sha256."""
    chosen = spread_choice(load_raw_corpus(corpus, list(databases)), images, seed)
    arguments = ["--model-dir", str(model_dir), "--corpus", str(corpus), "--images", str(images)]
    arguments += ["--seed", str(seed), "--databases", *databases]
    return quantize_model_dir(
        model_dir, chosen, "python -m models.train.quantize " + shlex.join(arguments)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.train.quantize", description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True, help="holds manifest.json")
    parser.add_argument("--corpus", type=Path, required=True, help="the corpus (has fvc2002/)")
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES, help="calibration images")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--databases", nargs="+", default=sorted(DATABASE_PPI), choices=sorted(DATABASE_PPI)
    )
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be at least 1")
    sha256 = quantize_from_corpus(
        args.model_dir, args.corpus, args.databases, args.images, args.seed
    )
    print(f"wrote {args.model_dir / INT8_FILE} (sha256 {sha256})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
