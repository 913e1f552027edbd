"""The kiosk daemon: capture thread (sensor -> pipeline -> outbox) beside the delivery worker.

The main thread drives captures; the delivery worker owns MQTT in its own thread. They meet only
in SQLite (outbox, bookings) and through ``DeliveryWorker.wake()``, so a crash of either side
leaves nothing half-written.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version

from edge import pipeline
from edge.bookings import Booking, BookingStore
from edge.config import Settings
from edge.delivery import DeliveryWorker
from edge.notify import SystemdNotifier
from edge.outbox import Outbox
from edge.wire import BookingRequest
from firmware_bridge import (
    Led,
    Sensor,
    SensorDisconnectedError,
    SensorError,
    SensorOpenError,
)

log = logging.getLogger(__name__)

# Acked rows keep only a tombstone (no biometrics) so a late duplicate ack is recognised; a
# week covers any broker or hub outage we would still be redelivering through.
ACKED_RETENTION = timedelta(days=7)
PURGE_INTERVAL_S = 3600.0
# A sensor plugged back in should be in use again before the officer wonders; trying to open an
# absent one costs a failed open() or one USB bus scan.
SENSOR_RETRY_MAX_S = 2.0
# How often `systemctl status` learns the outbox depth when nothing else happens.
STATUS_INTERVAL_S = 1.0


def software_version() -> str:
    try:
        return version("kiosk-edge")
    except PackageNotFoundError:
        return "unknown"


class Daemon:
    """Runs until ``stop`` is set; every failure of one capture is logged and survived."""

    def __init__(
        self,
        settings: Settings,
        sensor: Sensor,
        extractor: pipeline.Extractor,
        notifier: SystemdNotifier,
    ) -> None:
        self._settings = settings
        self._sensor = sensor
        self._extractor = extractor
        self._notifier = notifier
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._outbox = Outbox(settings.outbox_path)
        self._bookings = BookingStore(settings.state_dir / "bookings.sqlite3")
        self._delivery = DeliveryWorker(
            settings,
            software_version=software_version(),
            model_version=extractor.version,
            on_booking=self._on_booking,
        )
        self._sensor_open = False
        self._stop = threading.Event()
        self._last_status = ""
        self._next_status_at = 0.0

    # Called on the delivery worker's thread; the store opens its own connection.
    def _on_booking(self, request: BookingRequest) -> None:
        added = self._bookings.add(
            Booking(
                request.booking_reference,
                tuple(request.finger_positions),
                request.impression_type,
            )
        )
        log.info("booking request %s", "queued" if added else "already known, ignored")

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        worker = threading.Thread(
            target=self._delivery.run, args=(stop,), name="delivery", daemon=True
        )
        worker.start()
        try:
            self._open_sensor()
            if stop.is_set():
                return
            self._notifier.ready(self._status_line())
            log.info("ready")
            next_purge = time.monotonic()
            while not stop.is_set():
                self._tick()
                if time.monotonic() >= next_purge:
                    self._outbox.purge_acked(datetime.now(UTC) - ACKED_RETENTION)
                    next_purge = time.monotonic() + PURGE_INTERVAL_S
                self._capture_step()
        finally:
            self._notifier.stopping()
            stop.set()
            self._close_sensor()
            worker.join(timeout=10)
            self._outbox.close()

    # --- health -----------------------------------------------------------------------------

    def _tick(self) -> None:
        """Ping the watchdog only while the delivery worker is alive too; refresh STATUS."""
        now = time.monotonic()
        idle = now - self._delivery.last_loop_at
        if idle < self._settings.mqtt.keepalive * 2:
            self._notifier.watchdog()
        else:
            log.error("delivery worker silent for %.0f s; withholding watchdog ping", idle)
        if now >= self._next_status_at:
            self._next_status_at = now + STATUS_INTERVAL_S
            self._report_status()

    def _report_status(self, line: str | None = None) -> None:
        line = self._status_line() if line is None else line
        if line != self._last_status:
            self._last_status = line
            self._notifier.status(line)

    def _status_line(self) -> str:
        counts = self._outbox.counts()
        sensor = "sensor ok" if self._sensor_open else "sensor offline"
        return f"{sensor}; outbox pending {counts.get('pending', 0) + counts.get('sent', 0)}"

    # --- sensor -----------------------------------------------------------------------------

    def _open_sensor(self) -> None:
        delay = 0.5
        last_reason = ""
        while not self._stop.is_set():
            try:
                self._sensor.open()
            except SensorError as exc:
                self._delivery.set_sensor_state("offline")
                self._report_status(f"waiting for sensor: {exc}")
                if str(exc) != last_reason:
                    last_reason = str(exc)
                    log.warning("cannot open sensor (%s); retrying until it is back", exc)
                self._tick()
                self._stop.wait(delay)
                delay = min(delay * 2, SENSOR_RETRY_MAX_S)
                continue
            self._sensor_open = True
            self._delivery.set_sensor_state("ok")
            log.info("sensor open: %s on %s", self._sensor.info.model, self._sensor.info.port)
            return

    def _close_sensor(self) -> None:
        try:
            self._sensor.close()
        except SensorError as exc:
            log.warning("closing sensor: %s", exc)
        self._sensor_open = False

    def _sensor_lost(self, exc: SensorError) -> None:
        log.error("sensor disconnected: %s", exc)
        self._close_sensor()
        self._delivery.set_sensor_state("offline")
        self._report_status()
        self._open_sensor()
        self._report_status()

    # --- capture ----------------------------------------------------------------------------

    def _next_slot(self) -> pipeline.Slot | None:
        while True:
            booking = self._bookings.active()
            if booking is None:
                return None
            done = self._outbox.fingers_done(booking.booking_reference)
            remaining = [f for f in booking.finger_positions if f not in done]
            if remaining:
                return pipeline.Slot(
                    device_id=self._settings.device_id,
                    booking_reference=booking.booking_reference,
                    finger_position=remaining[0],
                    impression_type=booking.impression_type,
                )
            self._bookings.complete(booking.booking_reference)
            log.info("booking complete")

    def _capture_step(self) -> None:
        timeout = self._settings.capture.finger_timeout
        slot = self._next_slot()
        if slot is None:
            self._stop.wait(timeout)
            return
        try:
            self._sensor.set_led(Led.READY)
            if not self._sensor.wait_for_finger(timeout):
                return
            self._sensor.set_led(Led.BUSY)
            image = self._sensor.capture()
        except SensorDisconnectedError as exc:
            self._sensor_lost(exc)
            return
        except SensorOpenError as exc:
            self._sensor_lost(exc)
            return
        except SensorError as exc:
            log.warning("capture failed (%s): %s", type(exc).__name__, exc)
            self._feedback(Led.ERROR)
            return
        try:
            result = pipeline.process(
                image,
                slot,
                self._extractor,
                self._settings.quality,
                template_format=self._settings.capture.template_format,
                wsq_image=self._settings.capture.send_wsq_image,
            )
        except Exception:
            # A bug or a model failure must cost this capture only, never the daemon.
            log.exception("processing capture for finger %d failed", slot.finger_position)
            self._feedback(Led.ERROR)
            return
        if isinstance(result, pipeline.Rejected):
            assert result.report.rejection is not None
            log.info(
                "finger %d rejected: %s (quality %d)",
                slot.finger_position,
                result.report.rejection.value,
                result.report.score,
            )
            self._feedback(Led.ERROR)
            return
        message = result.message
        self._outbox.add(message)
        self._delivery.wake()
        log.info(
            "capture %s accepted: finger %d, quality %d, %d minutiae",
            message.capture_id,
            slot.finger_position,
            message.quality,
            result.minutiae_count,
        )
        self._report_status()
        self._feedback(Led.OK)

    def _feedback(self, led: Led) -> None:
        """Show the outcome, then wait for the finger to leave so it is not taken twice."""
        try:
            self._sensor.set_led(led)
            while not self._stop.is_set():
                self._tick()
                if self._sensor.wait_for_lift(self._settings.capture.finger_timeout):
                    return
        except SensorDisconnectedError as exc:
            self._sensor_lost(exc)
        except SensorError as exc:
            log.warning("waiting for lift failed: %s", exc)
