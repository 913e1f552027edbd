"""WSQ (FBI Wavelet Scalar Quantization) through NBIS, as packaged by the ``wsq`` wheel.

The codec is NBIS 5.0 compiled into the ``wsq`` distribution (module ``_wsq``): it encodes
8-bit grey images at 0.75 bits per pixel (about 15:1) and writes 500 ppi in the frame header,
which is what a 500 ppi booking image needs. Before NBIS sees untrusted bytes, the marker
structure and the frame size are checked here so that a hostile file cannot ask for a huge
image buffer.

NBIS's decoder is C that trusts its input: fuzzing showed malformed tables crash it with a
segmentation fault. Decoding therefore runs in a short-lived child process with a memory
limit, so a hostile file costs an error message, never the caller.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.an2k.errors import An2kFormatError, An2kValueError

SOI, EOI, SOF, SOB = 0xFFA0, 0xFFA1, 0xFFA2, 0xFFA3
TABLE_MARKERS = frozenset({0xFFA4, 0xFFA5, 0xFFA6, 0xFFA7, 0xFFA8})  # DTT DQT DHT DRT COM
BITRATE = 0.75
PPI = 500
MAX_SIDE = 6000  # a four-finger slap at 500 ppi is about 1,600 x 1,500


@dataclass(frozen=True)
class WsqImage:
    pixels: npt.NDArray[np.uint8]  # rows x columns
    ppi: int


def encode(pixels: npt.NDArray[np.uint8]) -> bytes:
    """Compress an 8-bit grey image captured at 500 ppi."""
    import _wsq  # type: ignore[import-not-found]

    if pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise An2kValueError(f"WSQ takes 8-bit grey images, not {pixels.dtype} {pixels.shape}")
    rows, cols = pixels.shape
    if not (1 <= rows <= MAX_SIDE and 1 <= cols <= MAX_SIDE):
        raise An2kValueError(f"image {cols}x{rows} is outside 1..{MAX_SIDE} pixels a side")
    data: bytes = _wsq.compress(np.ascontiguousarray(pixels).tobytes(), rows, cols, BITRATE)
    return data


def frame_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the frame header, after walking the markers before it."""
    if len(data) < 2 or struct.unpack(">H", data[:2])[0] != SOI:
        raise An2kFormatError(0, "WSQ start of image", "missing FFA0 marker")
    at = 2
    while True:
        if at + 4 > len(data):
            raise An2kFormatError(at, "WSQ marker", "data ends before the frame header")
        marker, length = struct.unpack(">HH", data[at : at + 4])
        if marker == SOF:
            if length < 17 or at + 2 + length > len(data):
                raise An2kFormatError(at, "WSQ frame header", f"length {length} is impossible")
            height, width = struct.unpack(">HH", data[at + 6 : at + 10])
            if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
                raise An2kFormatError(
                    at + 6, "WSQ frame size", f"{width}x{height} is outside 1..{MAX_SIDE}"
                )
            return width, height
        if marker not in TABLE_MARKERS:
            raise An2kFormatError(at, "WSQ marker", f"{marker:04X} where a table or frame belongs")
        if length < 2:
            raise An2kFormatError(at + 2, "WSQ segment length", f"{length} is under 2")
        at += 2 + length


# Runs in the child: only the NBIS module and the standard library, nothing of ours.
_DECODER = """
import resource, struct, sys
resource.setrlimit(resource.RLIMIT_AS, (%d, %d))
import _wsq
data = sys.stdin.buffer.read()
try:
    raw, cols, rows, ppi = _wsq.decompress(data)
except Exception as exc:
    sys.stderr.write(str(exc)[:200])
    sys.exit(2)
sys.stdout.buffer.write(struct.pack(">III", cols, rows, ppi) + raw)
"""
_DECODER_MEMORY = 1 << 30  # bytes of address space; a 6000 x 6000 frame needs far less
_DECODER_TIMEOUT_S = 30.0


def decode(data: bytes) -> WsqImage:
    """Decompress; malformed data raises :class:`An2kFormatError`."""
    width, height = frame_size(data)
    try:
        child = subprocess.run(
            [sys.executable, "-I", "-c", _DECODER % (_DECODER_MEMORY, _DECODER_MEMORY)],
            input=bytes(data),
            capture_output=True,
            timeout=_DECODER_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise An2kFormatError(0, "WSQ data", "NBIS did not finish decoding it") from None
    if child.returncode < 0:
        raise An2kFormatError(0, "WSQ data", "NBIS crashed on it (malformed tables)")
    if child.returncode != 0:
        reason = child.stderr.decode("utf-8", "replace").strip() or f"exit {child.returncode}"
        raise An2kFormatError(0, "WSQ data", f"NBIS could not decode it ({reason})")
    out = child.stdout
    if len(out) < 12:
        raise An2kFormatError(0, "WSQ data", "NBIS returned no image")
    cols, rows, ppi = struct.unpack(">III", out[:12])
    raw = out[12:]
    if (cols, rows) != (width, height) or len(raw) != cols * rows:
        raise An2kFormatError(0, "WSQ data", "decoded size disagrees with the frame header")
    pixels = np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols).copy()
    return WsqImage(pixels=pixels, ppi=ppi)
