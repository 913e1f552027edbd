"""Delivery worker against a real Mosquitto and the reference hub.

A capture leaves the outbox only on the hub's ack; refusals, crashes and silence all lead to
another send, never to a loss or a second stored copy.
"""

from __future__ import annotations

import queue
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import BrokerFactory, MqttTap, WaitUntil

from edge.config import MqttConfig, Settings
from edge.delivery import Backoff, DeliveryWorker
from edge.ids import new_capture_id
from edge.minutiae import Minutia, MinutiaKind
from edge.outbox import Outbox, OutboxRow
from edge.templates import minutiae_to_iso2005
from edge.wire import BookingRequest, DeviceStatus, TemplateMessage
from hil.broker import MosquittoBroker
from hil.hub import ReferenceHub

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
DEVICE = "kiosk-d1"
STATUS = f"kiosk/{DEVICE}/status"


def iso_record(finger: int) -> bytes:
    minutiae = [Minutia(30.0 + 11 * i, 50.0 + 9 * i, 25.0 * i, MinutiaKind.BIFURCATION, 55)
                for i in range(10)]
    return minutiae_to_iso2005(minutiae, width=256, height=288, ppi=500, finger_position=finger,
                               impression_type=0, quality=66)


def capture(finger: int = 1, template: bytes | None = None) -> TemplateMessage:
    return TemplateMessage.build(
        template_bytes=iso_record(finger) if template is None else template,
        capture_id=new_capture_id(),
        device_id=DEVICE,
        booking_reference="BK-500",
        finger_position=finger,
        impression_type=0,
        quality=66,
        captured_at=datetime.now(UTC),
        sensor="sim:1",
        model_version="m1",
    )


def make_settings(broker: MosquittoBroker, tmp_path: Path, **mqtt: Any) -> Settings:
    options: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "keepalive": 5,
        "reconnect_min_delay": 0.1,
        "reconnect_max_delay": 1.0,
        "ack_timeout": 5.0,
    }
    options.update(mqtt)
    return Settings(device_id=DEVICE, state_dir=tmp_path / "state", mqtt=MqttConfig(**options))


StartWorker = Callable[..., DeliveryWorker]


@contextmanager
def running(worker: DeliveryWorker) -> Iterator[DeliveryWorker]:
    """The worker on its own thread, stopped (and checked to have stopped) on leaving."""
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name="delivery-under-test")
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive(), "the worker did not stop"


@pytest.fixture
def start_worker() -> Iterator[StartWorker]:
    """``start_worker(settings, on_booking=None)`` runs a worker thread, stopped at the end."""
    with ExitStack() as stack:

        def start(
            settings: Settings, on_booking: Callable[[BookingRequest], None] | None = None
        ) -> DeliveryWorker:
            worker = DeliveryWorker(settings, "1.0-test", "m1", on_booking=on_booking)
            return stack.enter_context(running(worker))

        yield start


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    yield box
    box.close()


def row(outbox: Outbox, capture_id: str) -> OutboxRow:
    found = outbox.get(capture_id)
    assert found is not None
    return found


def state_of(outbox: Outbox, capture_id: str) -> str:
    return row(outbox, capture_id).state


def status_where(tap: MqttTap, predicate: Callable[[DeviceStatus], bool]) -> DeviceStatus:
    message = tap.next_matching(lambda m: predicate(DeviceStatus.parse(m.payload)), timeout=15)
    return DeviceStatus.parse(message.payload)


def subscribed(broker: MosquittoBroker, mqtt_tap: Callable[..., MqttTap]) -> None:
    """Wait until the worker's subscriptions are in place, so a booking sent now reaches it.

    Being connected is not enough: the worker subscribes after the CONNACK. It publishes its
    online status after subscribing, and the broker handles one client's packets in order.
    The broker is new for each test, so a retained online status is this worker's.
    """
    status_where(mqtt_tap(broker, STATUS), lambda s: s.state == "online")


# --- the normal path ------------------------------------------------------------------------


def test_a_capture_goes_pending_sent_acked_and_leaves_the_outbox(
    broker: MosquittoBroker, tmp_path: Path, outbox: Outbox, start_worker: StartWorker,
    wait_until: WaitUntil,
) -> None:
    with ReferenceHub(broker.host, broker.port, tmp_path / "hub.sqlite3") as hub:
        message = capture()
        outbox.add(message)
        start_worker(make_settings(broker, tmp_path)).wake()
        wait_until(lambda: state_of(outbox, message.capture_id) == "acked", what="the ack")
        done = row(outbox, message.capture_id)
        assert done.payload is None and done.attempts == 1
        assert done.sent_at is not None and done.acked_at is not None
        assert hub.count(message.capture_id) == 1
        assert hub.templates()[0].template == message.template_bytes


def test_the_retained_status_tracks_sensor_state_and_undelivered_captures(
    broker: MosquittoBroker, tmp_path: Path, outbox: Outbox, start_worker: StartWorker,
    mqtt_tap: Callable[..., MqttTap],
) -> None:
    tap = mqtt_tap(broker, STATUS)
    worker = start_worker(make_settings(broker, tmp_path))
    online = status_where(tap, lambda s: s.state == "online")
    assert (online.device_id, online.software_version, online.model_version) == (
        DEVICE, "1.0-test", "m1")
    worker.set_sensor_state("ok")
    outbox.add(capture(1))
    outbox.add(capture(2))
    worker.wake()
    status_where(tap, lambda s: s.sensor == "ok" and s.outbox_pending == 2)
    with ReferenceHub(broker.host, broker.port, tmp_path / "hub.sqlite3"):
        status_where(tap, lambda s: s.outbox_pending == 0)


def test_the_heartbeat_advances_while_the_worker_runs(
    broker: MosquittoBroker, tmp_path: Path, start_worker: StartWorker, wait_until: WaitUntil
) -> None:
    worker = start_worker(make_settings(broker, tmp_path))
    first = worker.last_loop_at
    wait_until(lambda: worker.last_loop_at > first, what="another loop turn")
    wait_until(lambda: worker.connected, what="the connection")


def test_an_unknown_sensor_state_is_refused(broker: MosquittoBroker, tmp_path: Path) -> None:
    worker = DeliveryWorker(make_settings(broker, tmp_path), "1", "m1")
    with pytest.raises(ValueError, match="sensor state"):
        worker.set_sensor_state("broken")  # type: ignore[arg-type]


# --- refusals, silence and crashes ----------------------------------------------------------


def test_a_puback_failure_is_not_delivery_and_the_row_stays_pending(
    broker_factory: BrokerFactory, tmp_path: Path, outbox: Outbox, start_worker: StartWorker,
    wait_until: WaitUntil,
) -> None:
    acl = tmp_path / "acl"
    # Anonymous clients may use every topic of the contract except templates.
    acl.write_text("topic readwrite kiosk/+/status\ntopic readwrite kiosk/+/acks\n"
                   "topic readwrite kiosk/+/booking\n")
    strict = broker_factory(extra_config=[f"acl_file {acl}"])
    message = capture()
    outbox.add(message)
    # A long backoff keeps the refused row pending (not re-sent) while it is inspected.
    start_worker(make_settings(strict, tmp_path, reconnect_min_delay=10.0,
                               reconnect_max_delay=20.0))
    wait_until(lambda: row(outbox, message.capture_id).last_error is not None,
               what="the refusal to be recorded")
    refused = row(outbox, message.capture_id)
    assert refused.state == "pending"
    assert refused.attempts == 1
    assert refused.last_error is not None and "0x87" in refused.last_error
    assert refused.payload == message.to_payload()


def test_an_unacked_capture_is_sent_again_after_the_ack_timeout(
    broker: MosquittoBroker, tmp_path: Path, outbox: Outbox, start_worker: StartWorker,
    wait_until: WaitUntil,
) -> None:
    message = capture()
    outbox.add(message)
    # No hub yet: the broker accepts the publish but nobody answers.
    start_worker(make_settings(broker, tmp_path, ack_timeout=0.3)).wake()
    wait_until(lambda: row(outbox, message.capture_id).attempts >= 2, what="a second send")
    assert "no ack" in (row(outbox, message.capture_id).last_error or "")
    with ReferenceHub(broker.host, broker.port, tmp_path / "hub.sqlite3") as hub:
        wait_until(lambda: state_of(outbox, message.capture_id) == "acked", what="the ack")
        assert hub.count(message.capture_id) == 1


def test_a_broker_crash_with_captures_pending_delivers_each_exactly_once(
    broker: MosquittoBroker, tmp_path: Path, outbox: Outbox, start_worker: StartWorker,
    wait_until: WaitUntil,
) -> None:
    hub_db = tmp_path / "hub.sqlite3"
    # The hub has a persistent session but is down, so nothing is acked before the crash.
    with ReferenceHub(broker.host, broker.port, hub_db):
        pass
    worker = start_worker(make_settings(broker, tmp_path, ack_timeout=2.0))
    sent_before = [capture(f) for f in range(1, 6)]
    for m in sent_before:
        outbox.add(m)
    worker.wake()
    wait_until(lambda: outbox.counts()["sent"] == len(sent_before), what="all to be sent")
    broker.kill()
    added_during = [capture(f) for f in range(6, 11)]
    for m in added_during:
        outbox.add(m)
    worker.wake()
    broker.restart()
    everything = sent_before + added_during
    with ReferenceHub(broker.host, broker.port, hub_db) as hub:
        wait_until(lambda: outbox.counts()["acked"] == len(everything), timeout=60,
                   what="every capture to be acked")
        assert all(hub.count(m.capture_id) == 1 for m in everything)
        assert len(hub.templates()) == len(everything)
    assert outbox.undelivered() == 0


def test_a_capture_the_hub_already_has_is_acked_as_duplicate_and_leaves(
    broker: MosquittoBroker, tmp_path: Path, outbox: Outbox, start_worker: StartWorker,
    mqtt_tap: Callable[..., MqttTap], wait_until: WaitUntil,
) -> None:
    message = capture()
    with ReferenceHub(broker.host, broker.port, tmp_path / "hub.sqlite3") as hub:
        # An earlier send reached the hub, but its ack was lost.
        mqtt_tap(broker).publish(f"kiosk/{DEVICE}/templates", message.to_payload())
        wait_until(lambda: hub.count(message.capture_id) == 1, what="the first copy")
        outbox.add(message)
        start_worker(make_settings(broker, tmp_path)).wake()
        wait_until(lambda: state_of(outbox, message.capture_id) == "acked", what="the ack")
        assert hub.duplicates_seen == 1
        assert hub.count(message.capture_id) == 1


def test_a_rejected_capture_is_kept_and_never_sent_again(
    broker: MosquittoBroker, tmp_path: Path, outbox: Outbox, start_worker: StartWorker,
    wait_until: WaitUntil,
) -> None:
    bad = capture(template=b"not an ISO record")
    good = capture(2)
    with ReferenceHub(broker.host, broker.port, tmp_path / "hub.sqlite3") as hub:
        outbox.add(bad)
        start_worker(make_settings(broker, tmp_path, ack_timeout=0.5)).wake()
        wait_until(lambda: state_of(outbox, bad.capture_id) == "rejected", what="the rejection")
        # A later capture goes through the same loop; the rejected one stays put meanwhile.
        outbox.add(good)
        wait_until(lambda: state_of(outbox, good.capture_id) == "acked", what="the good ack")
        rejected = row(outbox, bad.capture_id)
        assert rejected.attempts == 1
        assert rejected.last_error is not None and rejected.last_error.startswith("template:")
        assert hub.rejected == 1 and hub.count(bad.capture_id) == 0


# --- incoming messages ----------------------------------------------------------------------


def test_malformed_messages_on_the_ack_and_booking_topics_do_not_stop_the_worker(
    broker: MosquittoBroker, tmp_path: Path, outbox: Outbox, start_worker: StartWorker,
    mqtt_tap: Callable[..., MqttTap], wait_until: WaitUntil,
) -> None:
    bookings: queue.Queue[BookingRequest] = queue.Queue()
    worker = start_worker(make_settings(broker, tmp_path), on_booking=bookings.put)
    subscribed(broker, mqtt_tap)
    operator = mqtt_tap(broker)
    junk = [
        b"",
        b"\xff\xfe\x00",
        b"[" * 10_000,
        b'{"schema": "kiosk-edge.ack/1"}',
        b'{"schema": "kiosk-edge.booking/1", "booking_reference": "BK-1",'
        b' "finger_positions": [1, 1]}',
        b'{"schema": "kiosk-edge.ack/1", "capture_id": "' + new_capture_id().encode()
        + b'", "status": "accepted", "hub_received_at": "2025-01-01T00:00:00Z"}',  # unknown id
    ]
    for payload in junk:
        operator.publish(f"kiosk/{DEVICE}/acks", payload)
        operator.publish(f"kiosk/{DEVICE}/booking", payload)
    valid = BookingRequest(booking_reference="BK-501", finger_positions=[2, 7])
    operator.publish(f"kiosk/{DEVICE}/booking", valid.to_payload())
    assert bookings.get(timeout=10) == valid
    assert bookings.empty()
    # And it still delivers.
    with ReferenceHub(broker.host, broker.port, tmp_path / "hub.sqlite3"):
        message = capture()
        outbox.add(message)
        worker.wake()
        wait_until(lambda: state_of(outbox, message.capture_id) == "acked", what="the ack")


def test_a_booking_handler_that_raises_does_not_stop_the_worker(
    broker: MosquittoBroker, tmp_path: Path, start_worker: StartWorker,
    mqtt_tap: Callable[..., MqttTap],
) -> None:
    seen: queue.Queue[BookingRequest] = queue.Queue()

    def handler(request: BookingRequest) -> None:
        seen.put(request)
        if request.booking_reference == "BK-BOOM":
            raise RuntimeError("handler bug")

    start_worker(make_settings(broker, tmp_path), on_booking=handler)
    subscribed(broker, mqtt_tap)
    operator = mqtt_tap(broker)
    for reference in ("BK-BOOM", "BK-OK"):
        request = BookingRequest(booking_reference=reference, finger_positions=[1])
        operator.publish(f"kiosk/{DEVICE}/booking", request.to_payload())
    assert [seen.get(timeout=10).booking_reference for _ in range(2)] == ["BK-BOOM", "BK-OK"]


def test_a_booking_that_could_not_be_stored_comes_again_on_the_next_connection(
    broker: MosquittoBroker, tmp_path: Path, mqtt_tap: Callable[..., MqttTap],
) -> None:
    attempts: queue.Queue[str] = queue.Queue()

    def cannot_store(request: BookingRequest) -> None:
        attempts.put("failed " + request.booking_reference)
        raise sqlite3.OperationalError("disk I/O error")

    settings = make_settings(broker, tmp_path)
    with running(DeliveryWorker(settings, "1.0-test", "m1", on_booking=cannot_store)):
        subscribed(broker, mqtt_tap)
        request = BookingRequest(booking_reference="BK-777", finger_positions=[3])
        mqtt_tap(broker).publish(f"kiosk/{DEVICE}/booking", request.to_payload())
        assert attempts.get(timeout=10) == "failed BK-777"
    # Had the request been acknowledged on arrival, the broker would have nothing to resend.
    stores = DeliveryWorker(
        settings, "1.0-test", "m1", on_booking=lambda r: attempts.put(r.booking_reference)
    )
    with running(stores):
        assert attempts.get(timeout=15) == "BK-777"


# --- going offline --------------------------------------------------------------------------


def test_a_clean_stop_leaves_a_retained_offline_status(
    broker: MosquittoBroker, tmp_path: Path, mqtt_tap: Callable[..., MqttTap],
    wait_until: WaitUntil,
) -> None:
    worker = DeliveryWorker(make_settings(broker, tmp_path), "1.0-test", "m1")
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    wait_until(lambda: worker.connected, what="the connection")
    stop.set()
    thread.join(20)
    assert not thread.is_alive()
    retained = mqtt_tap(broker, STATUS).next()
    assert retained.retain
    assert DeviceStatus.parse(retained.payload).state == "offline"


_WORKER_PROCESS = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from edge.config import MqttConfig, Settings
    from edge.delivery import DeliveryWorker

    settings = Settings(device_id=sys.argv[1], state_dir=Path(sys.argv[2]),
                        mqtt=MqttConfig(host="127.0.0.1", port=int(sys.argv[3]), keepalive=5))
    DeliveryWorker(settings, "1.0-test", "m1").run(threading.Event())
    """
)


def test_the_last_will_marks_the_device_offline_when_its_process_dies(
    broker: MosquittoBroker, tmp_path: Path, mqtt_tap: Callable[..., MqttTap]
) -> None:
    watcher = mqtt_tap(broker, STATUS)
    child = subprocess.Popen(
        [sys.executable, "-c", _WORKER_PROCESS, DEVICE, str(tmp_path / "state"),
         str(broker.port)],
        cwd=REPO,
    )
    try:
        status_where(watcher, lambda s: s.state == "online")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    status_where(watcher, lambda s: s.state == "offline")
    retained = mqtt_tap(broker, STATUS).next()
    assert retained.retain
    assert DeviceStatus.parse(retained.payload).state == "offline"


# --- backoff --------------------------------------------------------------------------------


def test_backoff_doubles_from_the_minimum_up_to_the_maximum_and_resets() -> None:
    backoff = Backoff(0.5, 4.0)
    delays = [backoff.next() for _ in range(8)]
    assert all(0.5 <= d <= 4.0 for d in delays)
    assert delays[0] <= 0.5 + 1e-9
    assert delays[-1] >= 2.0  # the upper half of the capped step
    backoff.reset()
    assert backoff.next() <= 0.5 + 1e-9
