"""HIL scenarios, written once, run against each ``--hil-device`` target.

On the simulators every scenario runs; on a real rig those that need staging (a chosen image,
a fault, a cable pull) skip and say why.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pytest

from edge.config import QualityConfig
from edge.quality import assess
from firmware_bridge.errors import (
    SensorDisconnectedError,
    SensorError,
    SensorOperationError,
    SensorTimeoutError,
)
from firmware_bridge.sensor import Sensor
from firmware_bridge.zfm_protocol import (
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    PACKET_SIZES,
    Command,
    Confirmation,
    quantize_image,
)
from hil.appliance import Appliance
from hil.fingers import FingerGenerator
from hil.rig import CannotStage, Rig, Target, make_rig
from hil.simulator.faults import Fault, FirmwareError, Garbage, Stall
from hil.simulator.pty_scanner import ScannerState
from hil.usb.testbed import unavailable_reason

PATIENCE = 30.0


@pytest.fixture
def rig(hil_target: Target, tmp_path: Path) -> Iterator[Rig]:
    if hil_target.kind == "sim-usb" and (reason := unavailable_reason()) is not None:
        pytest.skip(reason)
    made = make_rig(hil_target, tmp_path)
    try:
        yield made
    finally:
        made.close()


def stage(action: Callable[[], None]) -> None:
    """Do a staging step, or skip the scenario when the target cannot stage it."""
    try:
        action()
    except CannotStage as exc:
        pytest.skip(str(exc))


def ridges(period: float) -> npt.NDArray[np.uint8]:
    y, x = np.mgrid[0:IMAGE_HEIGHT, 0:IMAGE_WIDTH]
    image: npt.NDArray[np.uint8] = (
        127.5 + 127.5 * np.sin(2 * np.pi * (x + 0.5 * y) / period)
    ).astype(np.uint8)
    return image


def smudge() -> npt.NDArray[np.uint8]:
    """A pressed-too-hard blot: dark, almost uniform."""
    rng = np.random.default_rng(5)
    return rng.integers(60, 70, size=(IMAGE_HEIGHT, IMAGE_WIDTH), dtype=np.uint8)


def take(sensor: Sensor) -> npt.NDArray[np.uint8]:
    assert sensor.wait_for_finger(PATIENCE)
    pixels = sensor.capture().pixels
    assert sensor.wait_for_lift(PATIENCE)
    return pixels


def test_sensor_answers_the_handshake_and_reports_its_parameters(rig: Rig) -> None:
    info = rig.sensor().info
    assert info.transport == ("usb" if rig.target.kind.endswith("usb") else "serial")
    assert info.packet_size in PACKET_SIZES
    assert info.library_size is not None and info.library_size > 0


def test_an_empty_glass_is_a_quiet_timeout(rig: Rig) -> None:
    assert not rig.sensor().wait_for_finger(0.3)


def test_finger_placed_is_captured_whole_and_then_lifted(rig: Rig) -> None:
    stage(lambda: rig.place(ridges(9.0)))
    pixels = take(rig.sensor())
    np.testing.assert_array_equal(pixels, quantize_image(ridges(9.0)))
    assert rig.state.lifts_seen == 1


def test_poor_image_is_rejected_and_the_good_one_after_it_accepted(rig: Rig) -> None:
    stage(lambda: rig.place(smudge()))
    rig.place(ridges(9.0))
    sensor = rig.sensor()
    quality = QualityConfig()
    first = assess(take(sensor), quality)
    second = assess(take(sensor), quality)
    assert first.rejection is not None
    assert second.rejection is None


def test_unplug_during_upload_fails_that_capture_whole_and_replug_resumes(rig: Rig) -> None:
    stage(lambda: rig.place(ridges(9.0)))
    rig.place(ridges(11.0))
    sensor = rig.sensor()
    assert sensor.wait_for_finger(PATIENCE)
    rig.slow_down()
    outcome: list[BaseException | None] = []

    def capture() -> None:
        try:
            sensor.capture()
            outcome.append(None)
        except SensorError as exc:
            outcome.append(exc)

    started = rig.state.bytes_sent
    capturing = threading.Thread(target=capture)
    capturing.start()
    assert rig.wait_until(lambda s: s.bytes_sent > started + 4096, PATIENCE)
    rig.unplug()
    capturing.join(PATIENCE)
    assert len(outcome) == 1 and isinstance(outcome[0], SensorDisconnectedError)

    rig.full_speed()
    rig.replug()
    sensor.open()
    # The simulated officer moved on once the device answered UpImage: the next finger, whole.
    np.testing.assert_array_equal(take(sensor), quantize_image(ridges(11.0)))


def test_garbage_on_the_line_is_skipped(rig: Rig) -> None:
    stage(lambda: rig.add_fault(Garbage(command=Command.GEN_IMG, times=3)))
    rig.place(ridges(9.0))
    np.testing.assert_array_equal(take(rig.sensor()), quantize_image(ridges(9.0)))


def test_a_stalled_sensor_times_out_and_answers_again_afterwards(rig: Rig) -> None:
    stage(lambda: rig.add_fault(Stall(command=Command.GEN_IMG)))
    sensor = rig.sensor()
    with pytest.raises(SensorTimeoutError):
        sensor.wait_for_finger(PATIENCE)
    assert not sensor.wait_for_finger(0.1)


def test_a_slow_sensor_still_delivers_whole_images(rig: Rig) -> None:
    stage(rig.slow_down)
    rig.place(ridges(9.0))
    np.testing.assert_array_equal(take(rig.sensor()), quantize_image(ridges(9.0)))


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (Command.GEN_IMG, Confirmation.IMAGE_FAILED),
        (Command.UP_IMAGE, Confirmation.IMAGE_UPLOAD_FAILED),
    ],
    ids=["GenImg-image-failed", "UpImage-upload-failed"],
)
def test_firmware_error_codes_surface_with_their_code(
    rig: Rig, command: Command, code: Confirmation
) -> None:
    stage(lambda: rig.add_fault(FirmwareError(command=command, code=code)))
    rig.place(ridges(9.0))
    sensor = rig.sensor()
    with pytest.raises(SensorOperationError) as caught:
        assert sensor.wait_for_finger(PATIENCE)
        sensor.capture()
    assert caught.value.code == code


# --- the whole appliance -------------------------------------------------------------------


class _Fingers:
    def __init__(self) -> None:
        self._generator = FingerGenerator(seed=11)

    def __call__(self, placement: int) -> npt.NDArray[np.uint8]:
        return self._generator.impression_image(placement, 0, width=256, height=288)


class _PtyAppliance(Appliance):
    """The appliance on the pty simulator, gating on link behaviour rather than prints."""

    def _daemon_env(self, env: dict[str, str]) -> dict[str, str]:
        return dict(env, KIOSK_QUALITY__MIN_MINUTIAE="1")


class _Cable(Protocol):
    """What PtyScanner and UsbSimulator both offer for pulling the cable mid-transfer."""

    @property
    def state(self) -> ScannerState: ...

    def wait_until(self, predicate: Callable[[ScannerState], bool], timeout: float) -> bool: ...
    def throttle(self, baudrate: int | None) -> None: ...
    def unplug(self) -> None: ...
    def replug(self) -> None: ...
    def add_fault(self, fault: Fault) -> None: ...


@contextlib.contextmanager
def _running_appliance(target: Target, workdir: Path) -> Iterator[tuple[Appliance, _Cable]]:
    """The appliance on ``target``'s simulator with the daemon started and online."""
    if not target.simulated:
        pytest.skip("the appliance scenarios drive a simulated sensor only")
    if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
        pytest.skip("mosquitto is not installed (./kiosk.sh test installs it)")
    if target.kind == "sim-usb" and (reason := unavailable_reason()) is not None:
        pytest.skip(reason)
    app: Appliance
    if target.kind == "sim-serial":
        app = _PtyAppliance(workdir, _Fingers(), device_id="kiosk-hil")
    else:
        from hil.usb.appliance import UsbAppliance

        app = UsbAppliance(workdir, device_id="kiosk-hil", min_minutiae=1)
    with app:
        app.start_daemon()
        app.wait_online()
        if isinstance(app, _PtyAppliance):
            assert app.scanner is not None
            yield app, app.scanner
        else:
            yield app, app.usb


def _stored(app: Appliance, booking: str) -> list[int]:
    assert app.hub is not None
    return sorted(t.finger_position for t in app.hub.templates() if t.booking_reference == booking)


def _wait_for_sensor_state(app: Appliance, state: str) -> None:
    """Wait for the retained status to report the sensor ``state``."""
    assert app.observer is not None
    deadline = time.monotonic() + PATIENCE
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            status = app.observer.status.get(timeout=remaining)
        except queue.Empty:
            break
        if status.get("sensor") == state:
            return
    raise AssertionError(f"status never reported sensor {state}; log:\n{app.tail_log()}")


@pytest.mark.integration
def test_captures_taken_while_the_broker_is_unreachable_are_all_delivered_once(
    hil_target: Target, tmp_path: Path
) -> None:
    fingers = [1, 2, 3, 4]
    with _running_appliance(hil_target, tmp_path) as (app, _):
        app.book("BK-HIL", fingers)
        app.next_delivery(timeout=PATIENCE)
        app.broker.stop()
        # Captures go on into the outbox while nothing can be sent.
        app.notifications(until=lambda line: line.endswith("outbox pending 2"), timeout=PATIENCE)
        app.broker.restart()

        def all_stored(line: str) -> bool:
            return line.endswith("outbox pending 0") and _stored(app, "BK-HIL") == fingers

        app.notifications(until=all_stored, timeout=3 * PATIENCE)
        assert app.stop_daemon() == 0
        assert _stored(app, "BK-HIL") == fingers


@pytest.mark.integration
def test_pulling_the_sensor_mid_upload_during_a_booking_loses_and_duplicates_no_capture(
    hil_target: Target, tmp_path: Path
) -> None:
    fingers = [1, 2, 3, 4]
    with _running_appliance(hil_target, tmp_path) as (app, cable):
        app.book("BK-PLUG", fingers)
        app.next_delivery(timeout=PATIENCE)
        # Slow the line so the next upload is still flowing when the cable comes out.
        cable.throttle(57600)
        uploads = cable.state.uploads
        assert cable.wait_until(lambda s: s.uploads > uploads, PATIENCE)
        sent = cable.state.bytes_sent
        assert cable.wait_until(lambda s: s.bytes_sent > sent + 4096, PATIENCE)
        cable.unplug()
        # The daemon says so in its retained status, and goes on once the sensor is back.
        _wait_for_sensor_state(app, "offline")
        cable.throttle(None)
        cable.replug()
        _wait_for_sensor_state(app, "ok")

        def all_stored(line: str) -> bool:
            return line.endswith("outbox pending 0") and _stored(app, "BK-PLUG") == fingers

        app.notifications(until=all_stored, timeout=3 * PATIENCE)
        assert app.stop_daemon() == 0
        assert _stored(app, "BK-PLUG") == fingers
        assert "sensor disconnected" in app.daemon_log.read_text()


@pytest.mark.integration
def test_a_finger_whose_upload_failed_is_lifted_retaken_and_delivered_once(
    hil_target: Target, tmp_path: Path
) -> None:
    fingers = [1, 2]
    with _running_appliance(hil_target, tmp_path) as (app, cable):
        cable.add_fault(
            FirmwareError(command=Command.UP_IMAGE, code=Confirmation.IMAGE_UPLOAD_FAILED)
        )
        app.book("BK-RETRY", fingers)

        def all_stored(line: str) -> bool:
            return line.endswith("outbox pending 0") and _stored(app, "BK-RETRY") == fingers

        app.notifications(until=all_stored, timeout=3 * PATIENCE)
        assert app.stop_daemon() == 0
        assert _stored(app, "BK-RETRY") == fingers
        # The failed finger was shown the error, lifted untaken, and a fresh one put down.
        assert cable.state.placed == len(fingers) + 1
        assert "capture failed (SensorOperationError)" in app.daemon_log.read_text()
