"""Reference hub: the receiving end of the wire contract, as a real hub must implement it.

What any hub must do (see docs/wire-contract.md):

1. Subscribe to ``{prefix}/+/templates`` at QoS 1 with a persistent session (clean start off, a
   session expiry), so captures published while it is down wait at the broker.
2. Validate each message: the envelope (:meth:`edge.wire.TemplateMessage.parse`), the topic's
   device id equal to the message's, and the template bytes (a complete ISO/IEC 19794-2:2005
   record whose finger view matches the envelope's finger position).
3. De-duplicate by capture id: kiosks re-send until acked, so the same capture can arrive many
   times; it is stored once.
4. Commit the capture durably BEFORE acknowledging it; ack ``accepted`` (new), ``duplicate``
   (already stored) or ``rejected`` with a reason (invalid; the kiosk will not re-send it).
5. Send the ack at QoS 1 to the message's ResponseTopic (only if it lies in the sender's own
   topic tree) with its CorrelationData, else to ``{prefix}/{device}/acks``.

A message whose capture id cannot be read cannot be acked; it is counted as rejected and
dropped. Run alone with ``python -m hil.hub --host 127.0.0.1 --port 1883 --db hub.sqlite3``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import paho.mqtt.client as mqtt
import pydantic_core
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.ids import is_uuid7
from edge.templates import TemplateError
from edge.templates.convert import decode_any
from edge.templates.formats import TemplateFormat
from edge.templates.iso19794_2_2011 import Iso2011Record
from edge.wire import (
    MAX_PAYLOAD_BYTES,
    Ack,
    AckStatus,
    TemplateMessage,
    Topics,
    WireError,
    all_devices_filter,
    publish_properties,
    session_properties,
    split_topic,
)

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
_MAX_REASON = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS templates (
    capture_id        TEXT PRIMARY KEY,
    device_id         TEXT NOT NULL,
    booking_reference TEXT NOT NULL,
    finger_position   INTEGER NOT NULL,
    impression_type   INTEGER NOT NULL,
    quality           INTEGER NOT NULL,
    captured_at       TEXT NOT NULL,
    sensor            TEXT NOT NULL,
    model_version     TEXT NOT NULL,
    template_format   TEXT NOT NULL,
    template          BLOB NOT NULL,
    received_at       TEXT NOT NULL,
    duplicates        INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rejections (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    capture_id  TEXT,
    reason      TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class HubError(Exception):
    """The hub could not connect or subscribe."""


class TemplateInvalid(Exception):
    """The envelope is fine but its template bytes are not an acceptable record."""


@dataclass(frozen=True)
class StoredTemplate:
    capture_id: str
    device_id: str
    booking_reference: str
    finger_position: int
    impression_type: int
    quality: int
    captured_at: datetime
    sensor: str
    model_version: str
    template_format: str
    template: bytes
    received_at: datetime
    duplicates: int


@dataclass(frozen=True)
class Rejection:
    device_id: str
    capture_id: str | None
    reason: str
    received_at: datetime


# Wire names of the formats a kiosk may send, to the codecs that check them.
_FORMATS = {
    "iso19794-2:2005": TemplateFormat.ISO2005,
    "iso19794-2:2011": TemplateFormat.ISO2011,
    "ansi-incits-378:2004": TemplateFormat.ANSI378,
}


def validate_template(message: TemplateMessage) -> None:
    """Raise TemplateInvalid unless the record decodes and matches the envelope's finger."""
    try:
        record = decode_any(message.template_bytes, _FORMATS[message.template_format])
    except TemplateError as exc:
        raise TemplateInvalid(f"template: {exc}") from None
    if isinstance(record, Iso2011Record):
        positions = {rep.finger_position for rep in record.representations}
    elif isinstance(record, list):
        raise TemplateInvalid("template: .xyt carries no finger position")
    else:
        positions = {view.finger_position for view in record.views}
    if message.finger_position not in positions:
        raise TemplateInvalid(
            f"template: no view for finger {message.finger_position} (has {sorted(positions)})"
        )


def _reason(text: str) -> str:
    """A reason the Ack model accepts: one line, no control characters, bounded."""
    cleaned = "".join(c if c.isprintable() else " " for c in text).strip()
    if len(cleaned) > _MAX_REASON:
        cleaned = cleaned[: _MAX_REASON - 3].rstrip() + "..."
    return cleaned or "invalid"


def _readable_capture_id(payload: bytes) -> str | None:
    """The capture id of an invalid message, if it has a well-formed one (so it can be acked)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        document = pydantic_core.from_json(payload)
    except ValueError:
        return None
    if isinstance(document, dict):
        value = document.get("capture_id")
        if isinstance(value, str) and is_uuid7(value):
            return value
    return None


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


class _Store:
    """The hub's SQLite database; one connection shared under a lock (paho thread + callers)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def store(self, message: TemplateMessage, received_at: datetime) -> tuple[bool, datetime]:
        """Insert once; returns (new, when first received). A repeat bumps the counters."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cursor = db.execute(
                    "INSERT INTO templates (capture_id, device_id, booking_reference,"
                    " finger_position, impression_type, quality, captured_at, sensor,"
                    " model_version, template_format, template, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (capture_id) DO NOTHING",
                    (
                        message.capture_id,
                        message.device_id,
                        message.booking_reference,
                        message.finger_position,
                        message.impression_type,
                        message.quality,
                        _stamp(message.captured_at),
                        message.sensor,
                        message.model_version,
                        message.template_format,
                        message.template_bytes,
                        _stamp(received_at),
                    ),
                )
                new = cursor.rowcount == 1
                if not new:
                    db.execute(
                        "UPDATE templates SET duplicates = duplicates + 1 WHERE capture_id = ?",
                        (message.capture_id,),
                    )
                    self._bump(db, "duplicates")
                (first,) = db.execute(
                    "SELECT received_at FROM templates WHERE capture_id = ?",
                    (message.capture_id,),
                ).fetchone()
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return new, datetime.fromisoformat(first)

    def reject(self, device_id: str, capture_id: str | None, reason: str, when: datetime) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO rejections (device_id, capture_id, reason, received_at)"
                " VALUES (?, ?, ?, ?)",
                (device_id, capture_id, reason, _stamp(when)),
            )

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str) -> None:
        db.execute(
            "INSERT INTO counters (name, value) VALUES (?, 1)"
            " ON CONFLICT (name) DO UPDATE SET value = value + 1",
            (name,),
        )

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()


class ReferenceHub:
    """MQTT v5 hub storing templates in SQLite at ``db_path``; use as a context manager."""

    def __init__(
        self,
        host: str,
        port: int,
        db_path: Path,
        topic_prefix: str = "kiosk",
        client_id: str = "reference-hub",
        connect_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.db_path = db_path
        self.topic_prefix = topic_prefix
        self.client_id = client_id
        self.connect_timeout = connect_timeout
        self._store: _Store | None = None
        self._client: mqtt.Client | None = None
        self._subscribed = threading.Event()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, subscribe, and return once the subscription is confirmed."""
        self._store = _Store(self.db_path)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        self._subscribed.clear()
        try:
            client.connect(
                self.host,
                self.port,
                clean_start=False,
                properties=session_properties(SESSION_EXPIRY_S),
            )
        except OSError as exc:
            self.stop()
            raise HubError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        client.loop_start()
        if not self._subscribed.wait(self.connect_timeout):
            self.stop()
            raise HubError(f"no subscription on {self.host}:{self.port} within "
                           f"{self.connect_timeout} s")

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def __enter__(self) -> ReferenceHub:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- queries --------------------------------------------------------------------------

    def templates(self) -> list[StoredTemplate]:
        rows = self._query(
            "SELECT capture_id, device_id, booking_reference, finger_position, impression_type,"
            " quality, captured_at, sensor, model_version, template_format, template,"
            " received_at, duplicates FROM templates ORDER BY rowid"
        )
        return [
            StoredTemplate(
                capture_id=r[0],
                device_id=r[1],
                booking_reference=r[2],
                finger_position=r[3],
                impression_type=r[4],
                quality=r[5],
                captured_at=datetime.fromisoformat(r[6]),
                sensor=r[7],
                model_version=r[8],
                template_format=r[9],
                template=r[10],
                received_at=datetime.fromisoformat(r[11]),
                duplicates=r[12],
            )
            for r in rows
        ]

    def count(self, capture_id: str) -> int:
        """How many stored rows hold this capture (0 or 1: that is the point)."""
        return int(self._query(
            "SELECT COUNT(*) FROM templates WHERE capture_id = ?", (capture_id,)
        )[0][0])

    @property
    def duplicates_seen(self) -> int:
        rows = self._query("SELECT value FROM counters WHERE name = 'duplicates'")
        return int(rows[0][0]) if rows else 0

    @property
    def rejected(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM rejections")[0][0])

    def rejections(self) -> list[Rejection]:
        rows = self._query(
            "SELECT device_id, capture_id, reason, received_at FROM rejections ORDER BY id"
        )
        return [Rejection(r[0], r[1], r[2], datetime.fromisoformat(r[3])) for r in rows]

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._store is None:
            raise HubError("hub is not running")
        return self._store.query(sql, params)

    # --- MQTT callbacks (paho's thread) ---------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("hub connection refused: %s", reason_code)
            return
        client.subscribe(all_devices_filter(self.topic_prefix, "templates"), qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(code.is_failure for code in reason_codes):
            log.error("hub subscription refused: %s", [str(c) for c in reason_codes])
            return
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        # An exception here would end paho's network thread: the hub must outlive any message.
        try:
            self._handle(client, msg)
        except Exception:
            log.exception("failed to handle a message on %s; not acked", msg.topic)

    def _handle(self, client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        store = self._store
        if store is None:
            return
        received_at = datetime.now(UTC)
        where = split_topic(self.topic_prefix, msg.topic)
        if where is None or where[1] != "templates":
            log.warning("ignoring message on unexpected topic %s", msg.topic)
            return
        device_id = where[0]
        payload = bytes(msg.payload)
        try:
            message = TemplateMessage.parse(payload)
            if message.device_id != device_id:
                raise TemplateInvalid(
                    f"device_id {message.device_id!r} does not match topic device {device_id!r}"
                )
            validate_template(message)
        except (WireError, TemplateInvalid) as exc:
            capture_id = _readable_capture_id(payload)
            reason = _reason(str(exc))
            store.reject(device_id, capture_id, reason, received_at)
            log.warning("rejected capture %s from %s: %s", capture_id, device_id, reason)
            if capture_id is not None:
                self._ack(client, msg, device_id, capture_id, "rejected", received_at, reason)
            return
        new, first_received = store.store(message, received_at)
        status: AckStatus = "accepted" if new else "duplicate"
        log.info("capture %s from %s: %s", message.capture_id, device_id, status)
        self._ack(client, msg, device_id, message.capture_id, status, first_received, None)

    def _ack(
        self,
        client: mqtt.Client,
        msg: mqtt.MQTTMessage,
        device_id: str,
        capture_id: str,
        status: AckStatus,
        received_at: datetime,
        reason: str | None,
    ) -> None:
        ack = Ack(capture_id=capture_id, status=status, reason=reason, hub_received_at=received_at)
        topic = Topics(self.topic_prefix, device_id).acks
        response_topic = getattr(msg.properties, "ResponseTopic", None)
        # Only answer inside the sender's own tree: a kiosk must not make the hub publish
        # elsewhere.
        if isinstance(response_topic, str) and response_topic.startswith(
            f"{self.topic_prefix}/{device_id}/"
        ):
            topic = response_topic
        correlation = getattr(msg.properties, "CorrelationData", None)
        properties = publish_properties(
            correlation_data=correlation if isinstance(correlation, bytes) else None
        )
        client.publish(topic, ack.to_payload(), qos=1, properties=properties)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--db", type=Path, required=True, help="SQLite file (created 0600)")
    parser.add_argument("--prefix", default="kiosk", help="topic prefix (default kiosk)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with ReferenceHub(args.host, args.port, args.db, topic_prefix=args.prefix):
            log.info("hub listening on %s:%d, storing in %s", args.host, args.port, args.db)
            stop.wait()
    except HubError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
