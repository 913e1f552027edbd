"""WSQ through NBIS: 500 ppi images near 0.75 bpp, and hostile headers refused before NBIS."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edge.an2k import wsq
from edge.an2k.errors import An2kFormatError, An2kValueError
from hil.fingers import FingerGenerator

pytest.importorskip("_wsq")


@pytest.fixture(scope="module")
def finger() -> np.ndarray:
    return FingerGenerator(seed=5).impression_image(0, 0)


def test_a_500_ppi_finger_compresses_near_the_fbi_bitrate_and_decodes_close(
    finger: np.ndarray,
) -> None:
    data = wsq.encode(finger)
    bits_per_pixel = 8 * len(data) / finger.size
    assert 0.5 < bits_per_pixel < 0.85  # NBIS aims at 0.75 bpp; background costs less
    image = wsq.decode(data)
    assert image.pixels.shape == finger.shape and image.ppi == 500
    assert np.abs(image.pixels.astype(int) - finger).mean() < 12  # lossy, not garbage


def test_frame_size_is_read_from_the_header(finger: np.ndarray) -> None:
    assert wsq.frame_size(wsq.encode(finger)) == (256, 288)


def test_a_frame_larger_than_any_booking_image_is_refused_before_decoding(
    finger: np.ndarray,
) -> None:
    data = bytearray(wsq.encode(finger))
    at = 2
    while struct.unpack(">H", data[at : at + 2])[0] != wsq.SOF:
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    data[at + 6 : at + 10] = struct.pack(">HH", 60000, 60000)
    with pytest.raises(An2kFormatError) as caught:
        wsq.decode(bytes(data))
    assert caught.value.field == "WSQ frame size"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"", "WSQ start of image"),
        (b"\xff\xd8\xff\xe0", "WSQ start of image"),
        (b"\xff\xa0\xff\xa8\x00", "WSQ marker"),
        (b"\xff\xa0\xff\xa8\x00\x01", "WSQ segment length"),
        (b"\xff\xa0\x12\x34\x00\x04", "WSQ marker"),
    ],
)
def test_malformed_headers_are_rejected_naming_the_marker(data: bytes, field: str) -> None:
    with pytest.raises(An2kFormatError) as caught:
        wsq.decode(data)
    assert caught.value.field == field


def test_corrupt_entropy_data_is_a_format_error(finger: np.ndarray) -> None:
    data = wsq.encode(finger)
    with pytest.raises(An2kFormatError):
        wsq.decode(data[: len(data) // 2])


def test_only_8_bit_grey_images_are_encoded() -> None:
    with pytest.raises(An2kValueError):
        wsq.encode(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(An2kValueError):
        wsq.encode(np.zeros((10, 10), np.uint16))


def test_a_decoder_crash_is_a_format_error_not_a_crash_of_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # NBIS segfaulted on fuzzed tables; stand in for that with a child that dies by SIGSEGV.
    crash = "import os, signal  # %d %d\nos.kill(os.getpid(), signal.SIGSEGV)"
    monkeypatch.setattr(wsq, "_DECODER", crash)
    data = wsq.encode(np.full((64, 64), 128, np.uint8))
    with pytest.raises(An2kFormatError, match="crashed"):
        wsq.decode(data)
