"""UsbSensor with unmodified pyusb and libusb against the simulated sensor on a umockdev bus.

The sensor runs in a child process started with umockdev's preload library (RemoteSensor); the
simulated device lives in another (UsbSimulator). Skips where umockdev cannot run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from firmware_bridge.errors import (
    SensorDisconnectedError,
    SensorError,
    SensorOpenError,
    SensorOperationError,
    SensorTimeoutError,
)
from firmware_bridge.zfm_protocol import (
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    Command,
    Confirmation,
    quantize_image,
)
from hil.simulator.faults import FirmwareError, Garbage, Stall
from hil.usb.remote import RemoteSensor
from hil.usb.simulator import UsbSimulator
from hil.usb.testbed import unavailable_reason

pytestmark = pytest.mark.skipif(
    unavailable_reason() is not None, reason=str(unavailable_reason())
)

TIMEOUT = 1.0
PATIENCE = 10.0

Connect = Callable[..., RemoteSensor]


def ridges(period: float) -> npt.NDArray[np.uint8]:
    y, x = np.mgrid[0:IMAGE_HEIGHT, 0:IMAGE_WIDTH]
    image: npt.NDArray[np.uint8] = (
        127.5 + 127.5 * np.sin(2 * np.pi * (x + 0.5 * y) / period)
    ).astype(np.uint8)
    return image


@pytest.fixture
def simulator() -> Iterator[UsbSimulator]:
    with UsbSimulator(auto_fingers=False) as sim:
        yield sim


@pytest.fixture
def connect(simulator: UsbSimulator) -> Iterator[Connect]:
    """``connect(**settings)`` -> a RemoteSensor for the simulated device, not yet opened."""
    with ExitStack() as stack:

        def make(**settings: Any) -> RemoteSensor:
            merged = {
                "vendor_id": simulator.vendor_id,
                "product_id": simulator.product_id,
                "timeout": TIMEOUT,
                **settings,
            }
            sensor = RemoteSensor("usb", merged, simulator.client_env())
            stack.callback(sensor.shutdown)
            return sensor

        yield make


def test_open_reads_the_parameters_and_reports_where_the_sensor_is(connect: Connect) -> None:
    sensor = connect()
    sensor.open()
    info = sensor.info
    assert info.transport == "usb"
    assert info.port == "usb:001:002"
    assert info.serial_number == "SIM0001"
    assert info.packet_size == 128
    assert info.extra["usb_id"] == "1209:0001"


def test_placed_finger_is_captured_over_bulk_transfers_and_then_lifted(
    simulator: UsbSimulator, connect: Connect
) -> None:
    finger = ridges(9.0)
    simulator.place(finger)
    sensor = connect()
    sensor.open()
    assert sensor.wait_for_finger(PATIENCE)
    image = sensor.capture()
    np.testing.assert_array_equal(image.pixels, quantize_image(finger))
    assert sensor.wait_for_lift(PATIENCE)
    assert simulator.state.uploads == 1


def test_no_finger_means_wait_for_finger_times_out_quietly(connect: Connect) -> None:
    sensor = connect()
    sensor.open()
    assert not sensor.wait_for_finger(0.2)


def test_a_serial_number_picks_the_device_and_a_wrong_one_is_refused(connect: Connect) -> None:
    connect(serial_number="SIM0001").open()
    with pytest.raises(SensorOpenError, match="serial number NOPE"):
        connect(serial_number="NOPE").open()


def test_an_absent_device_cannot_be_opened(connect: Connect) -> None:
    with pytest.raises(SensorOpenError, match="no USB sensor 1209:0002 attached"):
        connect(product_id=0x0002).open()


def test_close_releases_the_interface_so_the_sensor_can_be_opened_again(
    connect: Connect,
) -> None:
    sensor = connect()
    sensor.open()
    sensor.close()
    sensor.open()
    assert not sensor.wait_for_finger(0.1)


def test_a_swallowed_command_times_out_and_the_next_one_is_answered(
    simulator: UsbSimulator, connect: Connect
) -> None:
    sensor = connect()
    sensor.open()
    simulator.add_fault(Stall(command=Command.GEN_IMG))
    with pytest.raises(SensorTimeoutError, match="no reply to GEN_IMG"):
        sensor.wait_for_finger(PATIENCE)
    assert not sensor.wait_for_finger(0.1)


def test_a_stalled_endpoint_is_cleared_and_the_command_retried(
    simulator: UsbSimulator, connect: Connect
) -> None:
    simulator.place(ridges(9.0))
    sensor = connect()
    sensor.open()
    simulator.stall_in(1)
    assert sensor.wait_for_finger(PATIENCE)
    assert simulator.state.seen(Command.GEN_IMG) == 2


def test_a_bus_error_garbles_one_reply_which_is_retried(
    simulator: UsbSimulator, connect: Connect
) -> None:
    simulator.place(ridges(9.0))
    sensor = connect()
    sensor.open()
    simulator.io_error_in(1)
    assert sensor.wait_for_finger(PATIENCE)
    assert sensor.capture().pixels.shape == (IMAGE_HEIGHT, IMAGE_WIDTH)


def test_garbage_before_a_reply_is_skipped(simulator: UsbSimulator, connect: Connect) -> None:
    sensor = connect()
    sensor.open()
    simulator.add_fault(Garbage(command=Command.GEN_IMG))
    assert not sensor.wait_for_finger(0.1)


def test_firmware_error_codes_surface_with_their_code(
    simulator: UsbSimulator, connect: Connect
) -> None:
    sensor = connect()
    sensor.open()
    simulator.add_fault(FirmwareError(command=Command.GEN_IMG, code=Confirmation.IMAGE_FAILED))
    with pytest.raises(SensorOperationError) as caught:
        sensor.wait_for_finger(PATIENCE)
    assert caught.value.code == Confirmation.IMAGE_FAILED


def test_unplug_mid_upload_is_a_disconnect_and_replug_comes_back_at_a_new_address(
    simulator: UsbSimulator, connect: Connect
) -> None:
    simulator.place(ridges(9.0))
    simulator.place(ridges(11.0))
    sensor = connect(timeout=PATIENCE)
    sensor.open()
    assert sensor.wait_for_finger(PATIENCE)
    # Slow the upload down so the cable is pulled while image packets are still flowing.
    simulator.throttle(400_000)
    outcome: list[BaseException | None] = []

    def capture() -> None:
        try:
            sensor.capture()
            outcome.append(None)
        except SensorError as exc:
            outcome.append(exc)

    capturing = threading.Thread(target=capture)
    started = simulator.state.bytes_sent
    capturing.start()
    assert simulator.wait_until(lambda s: s.bytes_sent > started + 4096, PATIENCE)
    simulator.unplug()
    capturing.join(PATIENCE)
    assert len(outcome) == 1 and isinstance(outcome[0], SensorDisconnectedError)

    with pytest.raises(SensorOpenError):
        sensor.open()
    simulator.throttle(None)
    simulator.replug()
    sensor.open()
    assert sensor.info.port == "usb:001:003"
    assert sensor.wait_for_finger(PATIENCE)
    image = sensor.capture()
    # The simulated officer moved on once the device answered UpImage; what arrives now is the
    # next finger, whole, never the remains of the one that was cut off.
    np.testing.assert_array_equal(image.pixels, quantize_image(ridges(11.0)))
