"""ONNX export (opset 17, dynamic height and width) and the manifest beside it.

``export_onnx`` writes the network alone, taking the prepared float image;
``models.train.preparation.prepare_file`` then puts the input preparation in front of it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge.extraction import HEAD_CHANNELS, Background
from models.train.manifest_file import write_manifest as write_manifest  # its old home
from models.train.net import CELL
from models.train.preparation import input_spec

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "heads"


def export_onnx(model: nn.Module, path: Path) -> str:
    """Write the model; returns its sha256. Uses the TorchScript exporter (no onnxscript)."""
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    model.eval()
    dummy = torch.zeros(1, 1, 384, 288)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {2: "height", 3: "width"}, OUTPUT_NAME: {2: "rows", 3: "cols"}},
        opset_version=OPSET,
        dynamo=False,
    )
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(
    name: str,
    version: str,
    file: str,
    sha256: str,
    decoding: dict[str, float | int],
    training: dict[str, Any],
    metrics: dict[str, Any],
    background: Background = "flattened",
) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "file": file,
        "sha256": sha256,
        "input": input_spec(INPUT_NAME, background, CELL),
        "output": {
            "name": OUTPUT_NAME,
            "shape": [1, len(HEAD_CHANNELS), "height/8", "width/8"],
            "channels": list(HEAD_CHANNELS),
            "meaning": {
                "presence": "logit: a minutia lies in this 8x8 cell",
                "offset_x": "logit: x = (column + sigmoid) * 8 - 0.5 in pixels",
                "offset_y": "logit: y = (row + sigmoid) * 8 - 0.5 in pixels",
                "cos": "unnormalised cosine of the ISO angle (counter-clockwise, y down)",
                "sin": "unnormalised sine of the ISO angle",
                "bifurcation": "logit: bifurcation rather than ridge ending",
                "foreground": "logit: the cell is on the finger",
            },
        },
        "decoding": decoding,
        "training": training,
        "metrics": metrics,
    }
