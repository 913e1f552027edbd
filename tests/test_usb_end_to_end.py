"""Hot-plug through the whole appliance: a USB sensor pulled and put back during a booking.

The daemon runs as its own process with unmodified pyusb/libusb on the umockdev bus.
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.outbox import Outbox
from hil.appliance import Delivered
from hil.usb.appliance import UsbAppliance
from hil.usb.testbed import unavailable_reason

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
        reason="mosquitto is not installed (./kiosk.sh test installs it)",
    ),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

PATIENCE = 90.0


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[UsbAppliance]:
    # This test is about the link, not the prints: any finger with a minutia is accepted.
    with UsbAppliance(tmp_path, device_id="kiosk-usb", min_minutiae=1) as app:
        app.start_daemon()
        app.wait_online()
        done = threading.Event()
        drainer = threading.Thread(target=drain_notifications, args=(app, done))
        drainer.start()
        try:
            yield app
        finally:
            done.set()
            drainer.join()


def drain_notifications(app: UsbAppliance, done: threading.Event) -> None:
    """Read sd_notify datagrams as systemd would, so the daemon never blocks sending one."""
    while not done.is_set():
        try:
            app.notifications(until=lambda line: done.is_set(), timeout=0.5)
        except TimeoutError:
            continue
        except (RuntimeError, AssertionError):
            return  # the daemon has exited or been stopped


def collect(
    app: UsbAppliance, booking: str, fingers: int, got: dict[int, Delivered]
) -> dict[int, Delivered]:
    while len(got) < fingers:
        d = app.next_delivery(timeout=PATIENCE)
        if d.booking_reference == booking:
            assert d.status in ("accepted", "duplicate")
            got.setdefault(d.finger_position, d)
    return got


def wait_for_sensor_state(app: UsbAppliance, state: str) -> None:
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


def test_unplugging_the_usb_sensor_mid_upload_loses_no_capture_and_duplicates_none(
    appliance: UsbAppliance,
) -> None:
    usb = appliance.usb
    fingers = [1, 2, 3, 4]
    appliance.book("BK-USB-1", fingers)
    got = collect(appliance, "BK-USB-1", 1, {})
    # Slow the link so the next upload is still flowing when the cable comes out.
    usb.throttle(400_000)
    uploads = usb.state.uploads
    assert usb.wait_until(lambda s: s.uploads > uploads, PATIENCE)
    sent = usb.state.bytes_sent
    assert usb.wait_until(lambda s: s.bytes_sent > sent + 4096, PATIENCE)
    usb.unplug()
    wait_for_sensor_state(appliance, "offline")
    usb.throttle(None)
    usb.replug()
    wait_for_sensor_state(appliance, "ok")
    collect(appliance, "BK-USB-1", len(fingers), got)
    assert sorted(got) == fingers
    assert appliance.stop_daemon() == 0

    assert appliance.hub is not None
    stored = [t for t in appliance.hub.templates() if t.booking_reference == "BK-USB-1"]
    assert sorted(t.finger_position for t in stored) == fingers
    outbox = Outbox(appliance.state_dir / "outbox.sqlite3")
    try:
        counts = outbox.counts()
    finally:
        outbox.close()
    assert counts.get("acked", 0) == len(fingers)
    assert counts.get("pending", 0) == 0 and counts.get("sent", 0) == 0
    assert "sensor disconnected" in appliance.daemon_log.read_text()
