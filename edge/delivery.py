"""Delivery worker: moves captures from the outbox to the hub over MQTT v5, until acked.

The daemon runs :meth:`DeliveryWorker.run` in a thread of its own. The worker owns one paho
client and its own :class:`~edge.outbox.Outbox` connection. paho calls back on its network
thread; every callback only puts an event on a queue, so the outbox is touched by the worker
thread alone.

A capture leaves the outbox only when the hub's :class:`~edge.wire.Ack` for it arrives. A
PUBACK proves the broker took the message, not that the hub has it (a broker drops queued
messages under pressure and loses in-flight ones when a shared subscriber dies), and a PUBACK
with a failure reason code (v5, >= 0x80) means nobody got it: the row goes back to pending and
sending pauses with exponential backoff. A row sent but not acked within ``ack_timeout`` is
sent again; the hub de-duplicates by capture id.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import get_args

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import Settings
from edge.outbox import Outbox
from edge.wire import (
    Ack,
    BookingRequest,
    DeviceState,
    DeviceStatus,
    SensorState,
    Topics,
    WireError,
    publish_properties,
    session_properties,
    split_topic,
    will_properties,
)

log = logging.getLogger(__name__)

_TICK_S = 0.25  # longest wait between loop turns: bounds stop latency and the heartbeat period
_EVENTS_PER_TURN = 200
_SHUTDOWN_PUBLISH_S = 2.0


class Backoff:
    """Exponential delays from ``minimum`` doubling to ``maximum``, with jitter.

    The jitter (each delay drawn from the upper half of its step) keeps a fleet of kiosks that
    lost the same broker from reconnecting in lock step.
    """

    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        self._failures = 0

    def next(self) -> float:
        step = min(self.maximum, self.minimum * 2.0 ** min(self._failures, 62))
        self._failures += 1
        return max(self.minimum, random.uniform(step / 2, step))

    def reset(self) -> None:
        self._failures = 0


# --- events from paho's thread (and the daemon's) to the worker thread ----------------------


@dataclass(frozen=True)
class _Connected:
    generation: int
    reason: ReasonCode
    session_present: bool


@dataclass(frozen=True)
class _Disconnected:
    generation: int
    reason: ReasonCode


@dataclass(frozen=True)
class _Published:
    generation: int
    mid: int
    reason: ReasonCode


@dataclass(frozen=True)
class _Subscribed:
    refused: tuple[str, ...]


@dataclass(frozen=True)
class _Received:
    generation: int
    topic: str
    payload: bytes
    mid: int
    qos: int


@dataclass(frozen=True)
class _Wake:
    pass


@dataclass(frozen=True)
class _SensorChanged:
    state: SensorState


_Event = (
    _Connected | _Disconnected | _Published | _Subscribed | _Received | _Wake | _SensorChanged
)


class DeliveryWorker:
    """Publishes the outbox to the hub; thread-safe API, work done in :meth:`run`'s thread.

    ``on_booking`` receives each valid BookingRequest, called on the worker's thread.
    """

    def __init__(
        self,
        settings: Settings,
        software_version: str,
        model_version: str,
        on_booking: Callable[[BookingRequest], None] | None = None,
    ) -> None:
        self._settings = settings
        self._software_version = software_version
        self._model_version = model_version
        self._on_booking = on_booking
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._last_loop_at = time.monotonic()
        self._connected = threading.Event()
        # Built here, not in run(): a bad TLS file fails the daemon at start-up, visibly.
        self._client = self._new_client()

    @property
    def last_loop_at(self) -> float:
        """time.monotonic() of the worker loop's latest turn (the daemon's watchdog test)."""
        return self._last_loop_at

    @property
    def connected(self) -> bool:
        """True while the broker has accepted our connection."""
        return self._connected.is_set()

    def wake(self) -> None:
        """A row was added to the outbox: look at it now rather than at the next tick."""
        self._events.put(_Wake())

    def set_sensor_state(self, state: SensorState) -> None:
        """Report the sensor's state in the retained DeviceStatus."""
        if state not in get_args(SensorState):
            raise ValueError(f"unknown sensor state {state!r}")
        self._events.put(_SensorChanged(state))

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set, then publish an offline status and disconnect."""
        outbox = Outbox(self._settings.outbox_path)
        session = _Session(
            settings=self._settings,
            client=self._client,
            outbox=outbox,
            events=self._events,
            versions=(self._software_version, self._model_version),
            on_booking=self._on_booking,
            connected=self._connected,
        )
        try:
            while not stop.is_set():
                self._last_loop_at = time.monotonic()
                session.turn()
        finally:
            self._connected.clear()
            try:
                session.shutdown()
            finally:
                outbox.close()

    # --- paho client and its callbacks (paho's thread: enqueue only) --------------------

    def _new_client(self) -> mqtt.Client:
        cfg = self._settings.mqtt
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._settings.device_id,
            protocol=mqtt.MQTTv5,
            # The worker reconnects itself, with its own backoff and an up-to-date last will.
            reconnect_on_failure=False,
            # The worker acknowledges a message once it has been dealt with (a booking stored),
            # so one that a crash or a failed store lost is delivered again on reconnection.
            manual_ack=True,
        )
        client.user_data_set(0)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls is not None:
            client.tls_set(
                ca_certs=str(cfg.tls.ca_file),
                certfile=None if cfg.tls.cert_file is None else str(cfg.tls.cert_file),
                keyfile=None if cfg.tls.key_file is None else str(cfg.tls.key_file),
            )
        # Status messages share paho's in-flight window with templates.
        client.max_inflight_messages_set(cfg.max_inflight + 2)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        generation: int,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._events.put(_Connected(generation, reason_code, flags.session_present))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        generation: int,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        self._events.put(_Disconnected(generation, reason_code))

    def _on_publish(
        self,
        client: mqtt.Client,
        generation: int,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # The only place paho reports a v5 PUBACK failure reason code.
        self._events.put(_Published(generation, mid, reason_code))

    def _on_subscribe(
        self,
        client: mqtt.Client,
        generation: int,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = tuple(str(code) for code in reason_codes if code.is_failure)
        self._events.put(_Subscribed(refused))

    def _on_message(self, client: mqtt.Client, generation: int, msg: mqtt.MQTTMessage) -> None:
        self._events.put(_Received(generation, msg.topic, bytes(msg.payload), msg.mid, msg.qos))


class _Session:
    """Everything one :meth:`DeliveryWorker.run` call owns; used on the worker thread only."""

    def __init__(
        self,
        *,
        settings: Settings,
        client: mqtt.Client,
        outbox: Outbox,
        events: queue.SimpleQueue[_Event],
        versions: tuple[str, str],
        on_booking: Callable[[BookingRequest], None] | None,
        connected: threading.Event,
    ) -> None:
        self._cfg = settings.mqtt
        self._device_id = settings.device_id
        self._topics = Topics(self._cfg.topic_prefix, settings.device_id)
        self._client = client
        self._outbox = outbox
        self._events = events
        self._software_version, self._model_version = versions
        self._on_booking_callback = on_booking
        self._connected_flag = connected
        self._sensor: SensorState = "offline"  # until the daemon reports an open sensor
        self._generation = 0
        self._network_running = False
        self._connected = False
        self._next_connect_at = 0.0
        delays = (self._cfg.reconnect_min_delay, self._cfg.reconnect_max_delay)
        self._connect_backoff = Backoff(*delays)
        self._refusal_backoff = Backoff(*delays)
        self._paused_until = 0.0
        self._inflight: dict[int, str] = {}  # mid -> capture id, until its PUBACK
        self._awaiting_ack: dict[str, float] = {}  # capture id -> monotonic send time
        self._status_mids: set[int] = set()
        self._published_status: tuple[SensorState, int] | None = None

    # --- one loop turn ------------------------------------------------------------------

    def turn(self) -> None:
        now = time.monotonic()
        if not self._network_running and now >= self._next_connect_at:
            self._connect(now)
        self._expire_acks(now)
        self._send_pending(now)
        self._publish_status_if_changed()
        try:
            event = self._events.get(timeout=self._wait_time(time.monotonic()))
        except queue.Empty:
            return
        self._handle(event)
        for _ in range(_EVENTS_PER_TURN):
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            self._handle(event)

    def _wait_time(self, now: float) -> float:
        deadlines = [now + _TICK_S]
        if not self._network_running:
            deadlines.append(self._next_connect_at)
        if self._connected and self._paused_until > now:
            deadlines.append(self._paused_until)
        if self._awaiting_ack:
            deadlines.append(min(self._awaiting_ack.values()) + self._cfg.ack_timeout)
        return max(0.0, min(deadlines) - now)

    def _handle(self, event: _Event) -> None:
        match event:
            case _Received():
                self._on_received(event)
            case _Published():
                if event.generation == self._generation:
                    self._on_puback(event)
            case _Connected():
                if event.generation == self._generation:
                    self._on_connack(event)
            case _Disconnected():
                if event.generation == self._generation and self._network_running:
                    self._drop_connection(f"disconnected: {event.reason}")
            case _Subscribed():
                if event.refused:
                    log.error("broker refused our subscriptions: %s", ", ".join(event.refused))
            case _SensorChanged():
                self._sensor = event.state
            case _Wake():
                pass

    # --- connection ---------------------------------------------------------------------

    def _status(self, state: DeviceState) -> DeviceStatus:
        return DeviceStatus(
            device_id=self._device_id,
            state=state,
            sensor=self._sensor,
            outbox_pending=self._outbox.undelivered(),
            software_version=self._software_version,
            model_version=self._model_version,
            updated_at=datetime.now(UTC),
        )

    def _connect(self, now: float) -> None:
        self._generation += 1
        client = self._client
        client.user_data_set(self._generation)
        client.will_set(
            self._topics.status,
            self._status("offline").to_payload(),
            qos=1,
            retain=True,
            properties=will_properties(),
        )
        try:
            client.connect(
                self._cfg.host,
                self._cfg.port,
                keepalive=self._cfg.keepalive,
                clean_start=False,
                properties=session_properties(self._cfg.session_expiry),
            )
        except OSError as exc:
            delay = self._connect_backoff.next()
            self._next_connect_at = now + delay
            log.warning(
                "cannot reach broker %s:%d (%s); retrying in %.1f s",
                self._cfg.host, self._cfg.port, exc, delay,
            )
            return
        client.loop_start()
        self._network_running = True

    def _on_connack(self, event: _Connected) -> None:
        if event.reason.is_failure:
            # The broker closes the connection too; _drop_connection schedules the next try.
            self._drop_connection(f"connection refused: {event.reason}")
            return
        self._connected = True
        self._connected_flag.set()
        self._connect_backoff.reset()
        self._client.subscribe([(self._topics.acks, 1), (self._topics.booking, 1)])
        # Whatever was in flight on the old connection may never have reached the hub.
        requeued = self._outbox.requeue_sent()
        self._inflight.clear()
        self._awaiting_ack.clear()
        self._status_mids.clear()
        self._published_status = None
        log.info(
            "connected to %s:%d (session %s); %d unacked captures to resend",
            self._cfg.host, self._cfg.port,
            "resumed" if event.session_present else "new", requeued,
        )

    def _drop_connection(self, why: str) -> None:
        self._client.loop_stop()
        self._network_running = False
        self._connected = False
        self._connected_flag.clear()
        delay = self._connect_backoff.next()
        self._next_connect_at = time.monotonic() + delay
        log.warning("%s; reconnecting in %.1f s", why, delay)

    def shutdown(self) -> None:
        """Say offline (retained) and disconnect cleanly; the will is for unclean exits."""
        client = self._client
        if self._connected:
            info = client.publish(
                self._topics.status,
                self._status("offline").to_payload(),
                qos=1,
                retain=True,
                properties=publish_properties(),
            )
            try:
                info.wait_for_publish(_SHUTDOWN_PUBLISH_S)
            except (RuntimeError, ValueError) as exc:
                log.warning("offline status not confirmed: %s", exc)
            client.disconnect()
        if self._network_running:
            client.loop_stop()
            self._network_running = False
        self._connected = False

    # --- sending ------------------------------------------------------------------------

    def _send_pending(self, now: float) -> None:
        if not self._connected or now < self._paused_until:
            return
        room = self._cfg.max_inflight - len(self._awaiting_ack)
        if room <= 0:
            return
        for row in self._outbox.pending(room):
            if row.payload is None:
                continue
            info = self._client.publish(
                self._topics.templates,
                row.payload,
                qos=1,
                properties=publish_properties(
                    response_topic=self._topics.acks,
                    correlation_data=row.capture_id.encode("ascii"),
                ),
            )
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # The connection just went; the disconnect event follows, the row stays pending.
                return
            self._outbox.mark_sent(row.capture_id)
            self._inflight[info.mid] = row.capture_id
            self._awaiting_ack[row.capture_id] = now

    def _on_puback(self, event: _Published) -> None:
        if event.mid in self._status_mids:
            self._status_mids.discard(event.mid)
            if event.reason.is_failure:
                log.error("broker refused our status message: %s", event.reason)
            return
        capture_id = self._inflight.pop(event.mid, None)
        if capture_id is None:
            return
        if not event.reason.is_failure:
            self._refusal_backoff.reset()
            return
        self._awaiting_ack.pop(capture_id, None)
        error = f"broker refused: {event.reason} (0x{event.reason.value:02X})"
        self._outbox.mark_failed(capture_id, error)
        delay = self._refusal_backoff.next()
        self._paused_until = time.monotonic() + delay
        log.warning("capture %s %s; pausing sends for %.1f s", capture_id, error, delay)

    def _expire_acks(self, now: float) -> None:
        timeout = self._cfg.ack_timeout
        for capture_id, sent_at in list(self._awaiting_ack.items()):
            if now - sent_at >= timeout:
                del self._awaiting_ack[capture_id]
                self._outbox.mark_failed(capture_id, f"no ack from the hub within {timeout:g} s")
                log.info("capture %s not acked within %g s; will resend", capture_id, timeout)

    def _publish_status_if_changed(self) -> None:
        if not self._connected:
            return
        status = self._status("online")
        key = (status.sensor, status.outbox_pending)
        if key == self._published_status:
            return
        info = self._client.publish(
            self._topics.status, status.to_payload(), qos=1, retain=True,
            properties=publish_properties(),
        )
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._status_mids.add(info.mid)
            self._published_status = key

    # --- incoming -----------------------------------------------------------------------

    def _on_received(self, event: _Received) -> None:
        # Dropped messages are acknowledged too: delivering them again would not help. One from
        # an earlier connection is left to the broker, which sends it again on this one.
        if self._deal_with(event) and event.qos > 0 and event.generation == self._generation:
            self._client.ack(event.mid, event.qos)

    def _deal_with(self, event: _Received) -> bool:
        """Act on a message; False when it should come again (a booking was not stored)."""
        where = split_topic(self._cfg.topic_prefix, event.topic)
        if where is None or where[0] != self._device_id:
            log.warning("dropped message on unexpected topic %s", event.topic)
            return True
        kind = where[1]
        try:
            if kind == "acks":
                self._on_ack(Ack.parse(event.payload))
            elif kind == "booking":
                return self._on_booking(BookingRequest.parse(event.payload))
            else:
                log.warning("dropped message on unexpected topic %s", event.topic)
        except WireError as exc:
            # The error names fields and constraints, never the payload's content.
            log.warning("dropped malformed message on %s: %s", event.topic, exc)
        return True

    def _on_ack(self, ack: Ack) -> None:
        self._awaiting_ack.pop(ack.capture_id, None)
        if ack.status == "rejected":
            changed = self._outbox.mark_rejected(ack.capture_id, ack.reason or "rejected")
            if changed:
                log.error("hub rejected capture %s: %s", ack.capture_id, ack.reason)
        else:
            changed = self._outbox.mark_acked(ack.capture_id)
            if changed:
                log.info("capture %s delivered (%s)", ack.capture_id, ack.status)
        if not changed:
            log.debug("ack for capture %s changed nothing (late or unknown)", ack.capture_id)

    def _on_booking(self, request: BookingRequest) -> bool:
        callback = self._on_booking_callback
        if callback is None:
            log.warning("booking request received but nobody handles bookings")
            return True
        try:
            callback(request)
        except Exception:
            log.exception("booking handler failed; the broker resends it on reconnection")
            return False
        return True
