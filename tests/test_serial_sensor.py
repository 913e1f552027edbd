"""SerialSensor against the simulated scanner on a real pty, opened through a ttyUSB0-like symlink.

Every fault the line or the firmware can produce maps to one specific error class.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edge.config import SensorConfig
from firmware_bridge import make_sensor
from firmware_bridge.errors import (
    SensorDisconnectedError,
    SensorOpenError,
    SensorOperationError,
    SensorProtocolError,
    SensorTimeoutError,
)
from firmware_bridge.sensor import Led
from firmware_bridge.zfm_protocol import (
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    Command,
    Confirmation,
    quantize_image,
)
from firmware_bridge.zfm_serial import SerialSensor
from hil.simulator.device import ZfmDevice
from hil.simulator.faults import (
    BadChecksum,
    DropBytes,
    FirmwareError,
    Garbage,
    Stall,
    WrongAddress,
)
from hil.simulator.pty_scanner import PtyScanner
from hil.simulator.script import FingerScript

# Short enough to keep fault tests quick, long enough for a loaded machine to answer in time.
TIMEOUT = 0.5
# How long a test waits for something that must happen.
PATIENCE = 10.0

StartScanner = Callable[..., PtyScanner]


def ridges(period: float) -> npt.NDArray[np.uint8]:
    y, x = np.mgrid[0:IMAGE_HEIGHT, 0:IMAGE_WIDTH]
    image: npt.NDArray[np.uint8] = (
        127.5 + 127.5 * np.sin(2 * np.pi * (x + 0.5 * y) / period)
    ).astype(np.uint8)
    return image


@pytest.fixture
def start_scanner(tmp_path: Path) -> Iterator[StartScanner]:
    """Start a simulated scanner behind ``tmp_path/ttyUSB0`` with the given fingers."""
    with ExitStack() as stack:

        def start(*fingers: np.ndarray, **device: Any) -> PtyScanner:
            script = FingerScript()
            for image in fingers:
                script.place(image)
            scanner = PtyScanner(ZfmDevice(script, **device), tmp_path / "ttyUSB0")
            return stack.enter_context(scanner)

        yield start


@pytest.fixture
def sensors() -> Iterator[Callable[..., SerialSensor]]:
    """Build SerialSensors that are closed again at the end of the test."""
    with ExitStack() as stack:

        def build(scanner: PtyScanner, **settings: Any) -> SerialSensor:
            settings.setdefault("timeout", TIMEOUT)
            sensor = SerialSensor(scanner.path, **settings)
            stack.callback(sensor.close)
            return sensor

        yield build


def test_open_through_the_symlink_reads_the_device_identity(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner(system_id=0x0102, library_size=1000, security_level=5)
    sensor = sensors(scanner)
    sensor.open()
    info = sensor.info
    assert Path(info.port).is_symlink()
    assert (info.transport, info.identity) == ("serial", "zfm:0102:ffffffff")
    assert (info.address, info.packet_size, info.baudrate) == (0xFFFFFFFF, 128, 57600)
    assert (info.library_size, info.security_level, info.system_id) == (1000, 5, 0x0102)
    assert scanner.state.seen(Command.VFY_PWD) == 1


def test_the_configured_sensor_kind_serial_builds_a_serial_sensor(
    start_scanner: StartScanner,
) -> None:
    scanner = start_scanner()
    settings = SensorConfig(port=scanner.path, timeout=TIMEOUT).settings()
    with make_sensor("serial", **settings) as sensor:
        assert isinstance(sensor, SerialSensor)
        assert sensor.info.identity == "zfm:0000:ffffffff"


def test_a_captured_image_is_the_presented_finger_after_4_bit_quantisation(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    finger = ridges(9.0)
    sensor = sensors(start_scanner(finger))
    sensor.open()
    assert sensor.wait_for_finger(PATIENCE)
    image = sensor.capture()
    assert np.array_equal(image.pixels, quantize_image(finger))
    assert (image.width, image.height, image.ppi) == (256, 288, 500.0)
    assert image.sensor == sensor.info.identity
    assert image.captured_at.tzinfo == UTC


def test_fingers_follow_one_another_through_capture_and_lift(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    first, second = ridges(8.0), ridges(12.0)
    sensor = sensors(start_scanner(first, second))
    sensor.open()
    captured = []
    for _ in range(2):
        assert sensor.wait_for_finger(PATIENCE)
        captured.append(sensor.capture().pixels)
        assert sensor.wait_for_lift(PATIENCE)
    assert np.array_equal(captured[0], quantize_image(first))
    assert np.array_equal(captured[1], quantize_image(second))


def test_no_finger_within_the_wait_returns_false(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner()
    sensor = sensors(scanner)
    sensor.open()
    assert sensor.wait_for_finger(0.1) is False
    assert scanner.state.seen(Command.GEN_IMG) >= 1


def test_a_finger_left_on_the_glass_is_not_reported_lifted(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    sensor = sensors(start_scanner(ridges(9.0)))
    sensor.open()
    assert sensor.wait_for_finger(PATIENCE)
    assert sensor.wait_for_lift(0.1) is False


def test_capture_without_a_finger_image_is_refused(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner(ridges(9.0))
    sensor = sensors(scanner)
    sensor.open()
    with pytest.raises(SensorOperationError, match="wait_for_finger"):
        sensor.capture()
    assert sensor.wait_for_finger(PATIENCE)
    sensor.capture()
    with pytest.raises(SensorOperationError, match="since the last capture"):
        sensor.capture()
    assert scanner.state.uploads == 1


def test_a_failed_image_capture_raises_with_the_firmware_code(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner(ridges(9.0))
    sensor = sensors(scanner)
    sensor.open()
    scanner.device.faults.add(
        FirmwareError(command=Command.GEN_IMG, code=Confirmation.IMAGE_FAILED)
    )
    with pytest.raises(SensorOperationError, match="0x03") as caught:
        sensor.wait_for_finger(PATIENCE)
    assert caught.value.code == Confirmation.IMAGE_FAILED
    assert sensor.wait_for_finger(PATIENCE)


def test_a_refused_upload_raises_with_the_firmware_code(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner(ridges(9.0))
    scanner.device.faults.add(
        FirmwareError(command=Command.UP_IMAGE, code=Confirmation.IMAGE_UPLOAD_FAILED)
    )
    sensor = sensors(scanner)
    sensor.open()
    assert sensor.wait_for_finger(PATIENCE)
    with pytest.raises(SensorOperationError, match="0x0F") as caught:
        sensor.capture()
    assert caught.value.code == Confirmation.IMAGE_UPLOAD_FAILED


def test_a_corrupt_image_packet_fails_the_capture_and_a_recapture_succeeds(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    first, second = ridges(8.0), ridges(12.0)
    scanner = start_scanner(first, second)
    scanner.device.faults.add(BadChecksum(command=Command.UP_IMAGE, packet=100))
    sensor = sensors(scanner)
    sensor.open()
    assert sensor.wait_for_finger(PATIENCE)
    with pytest.raises(SensorProtocolError, match="image data packet 99: checksum mismatch"):
        sensor.capture()
    assert scanner.state.seen(Command.UP_IMAGE) == 1
    assert sensor.wait_for_finger(PATIENCE)
    assert np.array_equal(sensor.capture().pixels, quantize_image(second))


@pytest.mark.parametrize(
    "fault",
    [
        Garbage(command=Command.VFY_PWD),
        BadChecksum(command=Command.VFY_PWD),
        DropBytes(command=Command.READ_SYS_PARA, offset=20),
        WrongAddress(command=Command.READ_SYS_PARA),
    ],
    ids=["noise", "bad-checksum", "dropped-byte", "wrong-address"],
)
def test_one_garbled_handshake_reply_is_survived(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor], fault: Any
) -> None:
    scanner = start_scanner()
    scanner.device.faults.add(fault)
    sensor = sensors(scanner)
    sensor.open()
    assert sensor.info.identity == "zfm:0000:ffffffff"


def test_one_garbled_genimg_reply_is_retried(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner(ridges(9.0))
    sensor = sensors(scanner)
    sensor.open()
    scanner.device.faults.add(BadChecksum(command=Command.GEN_IMG))
    assert sensor.wait_for_finger(PATIENCE)
    assert scanner.state.seen(Command.GEN_IMG) == 2


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (BadChecksum(times=None), "checksum mismatch"),
        (WrongAddress(times=None), "packet from address 0x12345678, expected 0xFFFFFFFF"),
        (DropBytes(times=None, offset=9), "truncated"),
    ],
    ids=["bad-checksum", "wrong-address", "dropped-byte"],
)
def test_a_persistently_garbled_line_is_a_protocol_error(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor], fault: Any, message: str
) -> None:
    scanner = start_scanner(ridges(9.0))
    sensor = sensors(scanner)
    sensor.open()
    scanner.device.faults.add(fault)
    with pytest.raises(SensorProtocolError, match=message):
        sensor.wait_for_finger(PATIENCE)


def test_a_device_that_stops_answering_times_out(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner(ridges(9.0))
    sensor = sensors(scanner)
    sensor.open()
    scanner.device.faults.add(Stall(times=None))
    with pytest.raises(SensorTimeoutError, match=r"no reply to GEN_IMG within 0\.5 s"):
        sensor.wait_for_finger(PATIENCE)
    assert scanner.state.seen(Command.GEN_IMG) == 1


def test_a_device_that_answers_nothing_at_open_is_an_open_error(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner()
    scanner.device.faults.add(Stall(times=None))
    with pytest.raises(SensorOpenError, match="no reply to the password check"):
        sensors(scanner).open()


def test_a_slow_but_adequate_device_still_delivers_the_image(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    finger = ridges(9.0)
    scanner = start_scanner(finger)
    scanner.throttle(921_600)
    sensor = sensors(scanner)
    sensor.open()
    assert sensor.wait_for_finger(PATIENCE)
    assert np.array_equal(sensor.capture().pixels, quantize_image(finger))


def test_an_upload_slower_than_the_line_allows_times_out(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner(ridges(9.0))
    # The host expects 921,600 baud; the device only manages 9,600.
    sensor = sensors(scanner, baudrate=921_600)
    sensor.open()
    assert sensor.wait_for_finger(PATIENCE)
    scanner.throttle(9_600)
    with pytest.raises(SensorTimeoutError, match="image upload unfinished"):
        sensor.capture()


def test_unplugging_is_a_disconnect_and_replugging_allows_reopening(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    finger = ridges(9.0)
    scanner = start_scanner(finger)
    sensor = sensors(scanner)
    sensor.open()
    scanner.unplug()
    assert not os.path.lexists(scanner.path)
    with pytest.raises(SensorDisconnectedError):
        sensor.wait_for_finger(PATIENCE)
    sensor.close()
    with pytest.raises(SensorOpenError, match="cannot open serial port"):
        sensor.open()
    scanner.replug()
    sensor.open()
    assert sensor.wait_for_finger(PATIENCE)
    assert np.array_equal(sensor.capture().pixels, quantize_image(finger))
    assert scanner.state.plug_count == 2


def test_unplugging_during_an_upload_is_a_disconnect(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner(ridges(9.0))
    sensor = sensors(scanner)
    sensor.open()
    assert sensor.wait_for_finger(PATIENCE)
    scanner.throttle(115_200)  # keeps the upload on the wire long enough to pull the cable
    start_bytes = scanner.state.bytes_sent
    outcome: list[BaseException] = []

    def capture() -> None:
        try:
            sensor.capture()
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=capture)
    worker.start()
    assert scanner.wait_until(lambda s: s.bytes_sent > start_bytes + 1000, PATIENCE)
    scanner.unplug()
    worker.join(PATIENCE)
    assert not worker.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], SensorDisconnectedError)


def test_a_wrong_password_is_an_open_error(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner(password=0x5EC2E7)
    with pytest.raises(SensorOpenError, match="rejected the configured password"):
        sensors(scanner, password=0x1234).open()
    sensor = sensors(scanner, password=0x5EC2E7)
    sensor.open()
    assert sensor.info.extra["status_register"] & 0b100


def test_a_device_at_another_address_is_an_open_error_naming_it(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner(address=0x00000001)
    with pytest.raises(SensorOpenError, match="from address 0x00000001, expected 0xFFFFFFFF"):
        sensors(scanner).open()
    sensor = sensors(scanner, address=0x00000001)
    sensor.open()
    assert sensor.info.identity == "zfm:0000:00000001"


def test_a_packet_size_other_than_configured_is_an_open_error(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner(packet_size=64)
    with pytest.raises(SensorOpenError, match="64-byte data packets, configured for 128"):
        sensors(scanner).open()


def test_a_missing_port_is_an_open_error(tmp_path: Path) -> None:
    with pytest.raises(SensorOpenError, match="cannot open serial port"):
        SerialSensor(str(tmp_path / "ttyUSB9"), timeout=TIMEOUT).open()


def test_a_port_held_by_another_process_is_an_open_error(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner()
    sensors(scanner).open()
    with pytest.raises(SensorOpenError, match="cannot open serial port"):
        sensors(scanner).open()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_port_without_permission_is_an_open_error(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner()
    os.chmod(scanner.slave_path, 0)
    with pytest.raises(SensorOpenError, match="cannot open serial port"):
        sensors(scanner).open()


def test_close_is_idempotent_and_operations_after_it_are_refused(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    sensor = sensors(start_scanner())
    sensor.open()
    sensor.close()
    sensor.close()
    with pytest.raises(SensorOperationError, match="not open"):
        sensor.wait_for_finger(0.1)


def test_info_before_open_is_refused() -> None:
    with pytest.raises(SensorOperationError, match="not been opened"):
        _ = SerialSensor("/dev/null").info


def test_led_changes_send_nothing_to_a_plain_r30x(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner()
    sensor = sensors(scanner)
    sensor.open()
    before = sum(scanner.state.commands.values())
    for state in Led:
        sensor.set_led(state)
    sensor.wait_for_finger(0)
    assert sum(scanner.state.commands.values()) == before + 1  # the GenImg alone


def test_led_changes_drive_an_r503_aura_ring(
    start_scanner: StartScanner, sensors: Callable[..., SerialSensor]
) -> None:
    scanner = start_scanner(aura_led=True)
    sensor = sensors(scanner, aura_led=True)
    sensor.open()
    sensor.set_led(Led.ERROR)
    assert scanner.device.led == (2, 0x30, 1, 0)  # flashing red
    sensor.set_led(Led.OFF)
    assert scanner.device.led is not None and scanner.device.led[0] == 4
