"""Durable outbox: every capture is committed here before anyone tries to send it.

SQLite in WAL mode with ``synchronous=FULL``: once :meth:`Outbox.add` returns, the row survives
a process kill or power loss. A row stays until the hub's application-level ack arrives (an
MQTT PUBACK only proves the broker took it). Acked rows keep a tombstone without the template
bytes, so a late duplicate ack is harmless; ``purge_acked`` removes old tombstones.

One :class:`Outbox` (one SQLite connection) per thread; SQLite arbitrates between them.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal, cast

from edge.wire import TemplateMessage

SCHEMA_VERSION = 1
RowState = Literal["pending", "sent", "acked", "rejected"]
ROW_STATES: tuple[RowState, ...] = ("pending", "sent", "acked", "rejected")

_SCHEMA = """
CREATE TABLE captures (
    capture_id        TEXT PRIMARY KEY,
    booking_reference TEXT NOT NULL,
    finger_position   INTEGER NOT NULL,
    created_at        TEXT NOT NULL,
    state             TEXT NOT NULL
                      CHECK (state IN ('pending', 'sent', 'acked', 'rejected')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT,
    payload           BLOB,
    sent_at           TEXT,
    acked_at          TEXT
);
CREATE INDEX captures_by_state ON captures (state);
CREATE INDEX captures_by_booking ON captures (booking_reference);
"""

_COLUMNS = (
    "capture_id, booking_reference, finger_position, created_at, state, attempts, last_error,"
    " payload, sent_at, acked_at"
)


class OutboxError(Exception):
    """The outbox file cannot be used (newer schema, not a database, not writable)."""


@dataclass(frozen=True)
class OutboxRow:
    capture_id: str
    booking_reference: str
    finger_position: int
    created_at: datetime
    state: RowState
    attempts: int
    last_error: str | None
    payload: bytes | None  # None once acked
    sent_at: datetime | None
    acked_at: datetime | None


def _now() -> str:
    return _stamp(datetime.now(UTC))


def _stamp(when: datetime) -> str:
    # Fixed width, always UTC: the text sorts like the time, so SQL can compare it.
    if when.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_required_stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _parse_stamp(text: str | None) -> datetime | None:
    return None if text is None else _parse_required_stamp(text)


def _create_private(path: Path) -> None:
    """Create ``path`` (and its -wal/-shm companions, if present) readable by the owner only."""
    # Created before SQLite opens it: SQLite gives the -wal and -shm files the database file's
    # permission bits, so the captured templates never sit in a world-readable file.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.chmod(companion, 0o600)


class Outbox:
    """The outbox at ``path``; created (mode 0600) if absent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            _create_private(path)
            self._db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"{path}: cannot open: {exc}") from None
        try:
            self._configure()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise OutboxError(f"{path}: {exc}") from None
        except OutboxError:
            self._db.close()
            raise

    def _configure(self) -> None:
        db = self._db
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise OutboxError(f"{self.path}: cannot use WAL journal (got {mode!r})")
        db.execute("PRAGMA synchronous=FULL")
        # Freed pages (wiped payloads, purged rows) are overwritten, not left on the flash.
        db.execute("PRAGMA secure_delete=ON")
        with self._transaction():
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise OutboxError(
                    f"{self.path}: schema version {version}, this software knows {SCHEMA_VERSION}"
                )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def add(self, message: TemplateMessage) -> bool:
        """Commit a capture as pending; False (and no change) if its capture id is already here."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO captures (capture_id, booking_reference, finger_position,"
                " created_at, state, payload) VALUES (?, ?, ?, ?, 'pending', ?)"
                " ON CONFLICT (capture_id) DO NOTHING",
                (
                    message.capture_id,
                    message.booking_reference,
                    message.finger_position,
                    _now(),
                    message.to_payload(),
                ),
            )
            return cursor.rowcount == 1

    def get(self, capture_id: str) -> OutboxRow | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM captures WHERE capture_id = ?", (capture_id,)
        ).fetchone()
        return None if row is None else _row(row)

    def pending(self, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` rows waiting to be sent, oldest first."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM captures WHERE state = 'pending' ORDER BY rowid LIMIT ?",
            (limit,),
        ).fetchall()
        return [_row(r) for r in rows]

    def mark_sent(self, capture_id: str) -> bool:
        """pending -> sent (one more attempt); False if the row is not pending."""
        return self._update(
            "UPDATE captures SET state = 'sent', attempts = attempts + 1, sent_at = ?"
            " WHERE capture_id = ? AND state = 'pending'",
            (_now(), capture_id),
        )

    def mark_failed(self, capture_id: str, error: str) -> bool:
        """sent -> pending with ``error`` recorded (refused by the broker, or no ack in time)."""
        return self._update(
            "UPDATE captures SET state = 'pending', last_error = ?"
            " WHERE capture_id = ? AND state = 'sent'",
            (error, capture_id),
        )

    def mark_acked(self, capture_id: str) -> bool:
        """The hub has it: keep a tombstone, wipe the payload. False if not pending/sent."""
        return self._update(
            "UPDATE captures SET state = 'acked', acked_at = ?, payload = NULL, last_error = NULL"
            " WHERE capture_id = ? AND state IN ('pending', 'sent')",
            (_now(), capture_id),
        )

    def mark_rejected(self, capture_id: str, reason: str) -> bool:
        """The hub refused it: kept (with its payload, for review) and never sent again."""
        return self._update(
            "UPDATE captures SET state = 'rejected', last_error = ?, acked_at = ?"
            " WHERE capture_id = ? AND state IN ('pending', 'sent')",
            (reason, _now(), capture_id),
        )

    def requeue_sent(self) -> int:
        """Every sent row back to pending (after a reconnect or restart); returns how many."""
        with self._transaction() as db:
            return db.execute("UPDATE captures SET state = 'pending' WHERE state = 'sent'").rowcount

    def counts(self) -> dict[RowState, int]:
        """Rows per state; every state is present, zero if none."""
        found = dict(
            self._db.execute("SELECT state, COUNT(*) FROM captures GROUP BY state").fetchall()
        )
        return {state: int(found.get(state, 0)) for state in ROW_STATES}

    def undelivered(self) -> int:
        """Rows the hub has not acknowledged yet (pending or sent)."""
        (n,) = self._db.execute(
            "SELECT COUNT(*) FROM captures WHERE state IN ('pending', 'sent')"
        ).fetchone()
        return int(n)

    def fingers_done(self, booking_reference: str) -> set[int]:
        """Finger positions already in the outbox for this booking, whatever their state."""
        rows = self._db.execute(
            "SELECT DISTINCT finger_position FROM captures WHERE booking_reference = ?",
            (booking_reference,),
        ).fetchall()
        return {int(r[0]) for r in rows}

    def purge_acked(self, older_than: datetime) -> int:
        """Delete tombstones acked before ``older_than``; returns how many."""
        with self._transaction() as db:
            return db.execute(
                "DELETE FROM captures WHERE state = 'acked' AND acked_at < ?",
                (_stamp(older_than),),
            ).rowcount

    def _update(self, sql: str, params: tuple[object, ...]) -> bool:
        with self._transaction() as db:
            return db.execute(sql, params).rowcount == 1


def _row(values: tuple[object, ...]) -> OutboxRow:
    (capture_id, booking, finger, created, state, attempts, error, payload, sent, acked) = values
    return OutboxRow(
        capture_id=cast(str, capture_id),
        booking_reference=cast(str, booking),
        finger_position=cast(int, finger),
        created_at=_parse_required_stamp(cast(str, created)),
        state=cast(RowState, state),
        attempts=cast(int, attempts),
        last_error=cast("str | None", error),
        payload=cast("bytes | None", payload),
        sent_at=_parse_stamp(cast("str | None", sent)),
        acked_at=_parse_stamp(cast("str | None", acked)),
    )
