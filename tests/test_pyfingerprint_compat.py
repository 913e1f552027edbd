"""The unmodified third-party pyfingerprint 1.5 client works against the simulated scanner.

An independent host implementation keeps the simulator honest: it must not merely agree with our
own client about the protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from firmware_bridge.zfm_protocol import IMAGE_HEIGHT, IMAGE_WIDTH, quantize_image
from hil.simulator.device import ZfmDevice
from hil.simulator.pty_scanner import PtyScanner
from hil.simulator.script import FingerScript

pyfingerprint = pytest.importorskip("pyfingerprint.pyfingerprint")


def ridges(period: float) -> npt.NDArray[np.uint8]:
    y, x = np.mgrid[0:IMAGE_HEIGHT, 0:IMAGE_WIDTH]
    image: npt.NDArray[np.uint8] = (
        127.5 + 127.5 * np.sin(2 * np.pi * (x - 0.3 * y) / period)
    ).astype(np.uint8)
    return image


@pytest.fixture
def scanner(tmp_path: Path) -> Iterator[PtyScanner]:
    script = FingerScript()
    script.place(ridges(9.0))
    script.place(ridges(11.0))
    device = ZfmDevice(script, system_id=0x0009, library_size=1000, templates=3)
    with PtyScanner(device, tmp_path / "ttyUSB0") as running:
        yield running


def test_pyfingerprint_handshake_and_system_parameters(scanner: PtyScanner) -> None:
    sensor = pyfingerprint.PyFingerprint(scanner.path, 57600, 0xFFFFFFFF, 0x00000000)
    assert sensor.verifyPassword() is True
    assert sensor.getSystemParameters() == (0b0100, 0x0009, 1000, 3, 0xFFFFFFFF, 2, 6)
    assert sensor.getStorageCapacity() == 1000
    assert sensor.getMaxPacketSize() == 128
    assert sensor.getBaudRate() == 57600
    assert sensor.getTemplateCount() == 3
    assert sensor.getTemplateIndex(0)[:4] == [True, True, True, False]


def test_pyfingerprint_reads_and_downloads_the_presented_images(
    scanner: PtyScanner, tmp_path: Path
) -> None:
    sensor = pyfingerprint.PyFingerprint(scanner.path, 57600, 0xFFFFFFFF, 0x00000000)
    assert sensor.verifyPassword()
    downloaded = []
    for number in range(2):
        assert sensor.readImage() is True
        path = tmp_path / f"finger{number}.png"
        sensor.downloadImage(str(path))
        with Image.open(path) as image:
            downloaded.append(np.asarray(image))
        assert sensor.readImage() is False  # lifted, and pyfingerprint has now seen it
    assert np.array_equal(downloaded[0], quantize_image(ridges(9.0)))
    assert np.array_equal(downloaded[1], quantize_image(ridges(11.0)))
    assert scanner.state.uploads == 2


def test_pyfingerprint_sees_a_wrong_password_as_rejected(tmp_path: Path) -> None:
    with PtyScanner(ZfmDevice(FingerScript(), password=0x1234), tmp_path / "ttyUSB1") as scanner:
        sensor = pyfingerprint.PyFingerprint(scanner.path, 57600, 0xFFFFFFFF, 0x00000000)
        assert sensor.verifyPassword() is False
