"""The simulated scanner on a pty: stable symlink, raw line, plug events, and the served process."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from firmware_bridge.zfm_protocol import (
    Command,
    Confirmation,
    PacketParser,
    command_packet,
    encode_packet,
    quantize_image,
)
from firmware_bridge.zfm_serial import SerialSensor
from hil.simulator.device import ZfmDevice
from hil.simulator.pty_scanner import PtyScanner
from hil.simulator.script import FingerScript, RidgeImages

PATIENCE = 10.0
REPO = Path(__file__).resolve().parents[1]


def read_reply(fd: int) -> bytes:
    """One acknowledgement packet's payload read from a raw descriptor, waiting with select()."""
    parser = PacketParser()
    while True:
        packet = parser.next_packet()
        if packet is not None:
            return packet.payload
        ready, _, _ = select.select([fd], [], [], PATIENCE)
        assert ready, "no reply from the simulated scanner"
        parser.feed(os.read(fd, 4096))


def test_the_link_points_at_the_current_pty_and_follows_a_replug(tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB0"
    with PtyScanner(ZfmDevice(FingerScript()), link) as scanner:
        assert scanner.path == str(link)
        first = os.readlink(link)
        assert first == scanner.slave_path
        assert first.startswith("/dev/pts/")
        scanner.unplug()
        assert not os.path.lexists(link)
        assert not scanner.state.plugged
        scanner.replug()
        assert os.readlink(link) == scanner.slave_path
        assert scanner.state.plugged
        assert scanner.state.plug_count == 2
    assert not os.path.lexists(link)


def test_a_stale_link_is_replaced_at_start(tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB0"
    link.symlink_to("/dev/pts/does-not-exist")
    with PtyScanner(ZfmDevice(FingerScript()), link) as scanner:
        assert os.readlink(link) == scanner.slave_path


def test_without_a_link_clients_use_the_pty_path() -> None:
    with PtyScanner(ZfmDevice(FingerScript())) as scanner:
        assert scanner.path == scanner.slave_path


def test_the_line_is_raw_before_any_client_configures_it(tmp_path: Path) -> None:
    # Bytes that a cooked tty would swallow or translate: CR, ^C, ^D, ^S, XON, DEL.
    password = bytes([0x0D, 0x03, 0x04, 0x13])
    device = ZfmDevice(FingerScript(), password=int.from_bytes(password, "big"))
    with PtyScanner(device, tmp_path / "ttyUSB0") as scanner:
        fd = os.open(scanner.path, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, encode_packet(command_packet(0xFFFFFFFF, Command.VFY_PWD, password)))
            assert read_reply(fd) == bytes([Confirmation.OK])
            os.write(fd, encode_packet(command_packet(0xFFFFFFFF, Command.TEMPLATE_NUM)))
            assert read_reply(fd) == bytes([Confirmation.OK, 0, 0])
        finally:
            os.close(fd)
    assert scanner.state.seen(Command.VFY_PWD) == 1


def test_waiting_for_something_that_never_happens_returns_false() -> None:
    with PtyScanner(ZfmDevice(FingerScript())) as scanner:
        assert scanner.wait_until(lambda s: s.uploads > 0, timeout=0.05) is False


def test_a_failure_inside_the_scanner_is_reported_by_stop(tmp_path: Path) -> None:
    def broken_source(index: int) -> npt.NDArray[np.uint8]:
        raise OSError("image store unreadable")

    scanner = PtyScanner(ZfmDevice(FingerScript(broken_source)), tmp_path / "ttyUSB0")
    scanner.start()
    fd = os.open(scanner.path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, encode_packet(command_packet(0xFFFFFFFF, Command.GEN_IMG)))
        assert scanner.wait_until(lambda s: False, timeout=PATIENCE) is False
    finally:
        os.close(fd)
    with pytest.raises(RuntimeError, match="simulated scanner failed") as caught:
        scanner.stop()
    assert isinstance(caught.value.__cause__, OSError)


def test_throttling_needs_a_positive_baud_rate() -> None:
    with PtyScanner(ZfmDevice(FingerScript())) as scanner, pytest.raises(ValueError):
        scanner.throttle(0)


def serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``serve_forever`` in its own process; return it and its first output line."""
    code = (
        "import sys; from pathlib import Path; from hil.simulator.serve import serve_forever; "
        "serve_forever(Path(sys.argv[1]), Path(sys.argv[2]) if sys.argv[2] else None, 7)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "ttyUSB0"), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], PATIENCE * 3)
    if not ready:
        process.kill()
        process.wait()
        pytest.fail("the simulator process printed nothing")
    return process, process.stdout.readline()


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(PATIENCE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.integration
def test_the_served_scanner_announces_its_path_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    process, line = serve(tmp_path, "")
    try:
        link = tmp_path / "ttyUSB0"
        assert line.startswith("simulated fingerprint scanner on /dev/pts/")
        assert line.rstrip().endswith(f"(link {link})")
        with SerialSensor(str(link), timeout=2.0) as sensor:
            assert sensor.wait_for_finger(PATIENCE)
            pixels = sensor.capture().pixels
        assert np.array_equal(pixels, quantize_image(RidgeImages(7)(0)))
    finally:
        assert stop(process) == 0
    assert not link.exists()


@pytest.mark.integration
def test_the_served_scanner_presents_images_from_a_directory(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    y, x = np.mgrid[0:300, 0:300]
    finger = (127.5 + 127.5 * np.sin(2 * np.pi * (x - y) / 10.0)).astype(np.uint8)
    Image.fromarray(finger).save(images / "001_1.png")
    process, _ = serve(tmp_path, str(images))
    try:
        with SerialSensor(str(tmp_path / "ttyUSB0"), timeout=2.0) as sensor:
            assert sensor.wait_for_finger(PATIENCE)
            pixels = sensor.capture().pixels
        assert np.array_equal(pixels, quantize_image(finger[6:294, 22:278]))
    finally:
        assert stop(process) == 0
