"""How the simulator process and its controller encode faults, images and state as JSON."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from hil.simulator import faults
from hil.simulator.pty_scanner import ScannerState

_FAULTS: dict[str, type[faults.Fault]] = {
    cls.__name__: cls
    for cls in (
        faults.FirmwareError,
        faults.Stall,
        faults.Garbage,
        faults.DropBytes,
        faults.BadChecksum,
        faults.WrongAddress,
    )
}


def encode_fault(fault: faults.Fault) -> dict[str, Any]:
    fields = {
        name: value.hex() if isinstance(value, bytes) else value
        for name, value in dataclasses.asdict(fault).items()
    }
    return {"type": type(fault).__name__, "fields": fields}


def decode_fault(data: dict[str, Any]) -> faults.Fault:
    cls = _FAULTS[data["type"]]
    fields = dict(data["fields"])
    if cls is faults.Garbage:
        fields["data"] = bytes.fromhex(fields["data"])
    return cls(**fields)


def encode_image(image: npt.NDArray[np.uint8]) -> dict[str, Any]:
    return {
        "shape": list(image.shape),
        "pixels": base64.b64encode(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).decode(),
    }


def decode_image(data: dict[str, Any]) -> npt.NDArray[np.uint8]:
    height, width = data["shape"]
    pixels = np.frombuffer(base64.b64decode(data["pixels"]), dtype=np.uint8)
    return pixels.reshape(height, width).copy()


def encode_state(state: ScannerState) -> dict[str, Any]:
    fields = dataclasses.asdict(state)
    fields["commands"] = {str(code): count for code, count in state.commands.items()}
    return fields


def decode_state(data: dict[str, Any]) -> ScannerState:
    fields = dict(data)
    fields["commands"] = {int(code): count for code, count in data["commands"].items()}
    return ScannerState(**fields)
