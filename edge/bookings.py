"""Bookings the operator asked for, kept in SQLite so a restart resumes the one in progress.

Which fingers of a booking remain is not stored here: it is derived from the outbox (a finger
is done once its capture is in the outbox), so the two can never disagree after a crash.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bookings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    booking_reference TEXT NOT NULL UNIQUE,
    finger_positions TEXT NOT NULL,
    impression_type INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    completed_at TEXT
);
"""


@dataclass(frozen=True)
class Booking:
    booking_reference: str
    finger_positions: tuple[int, ...]
    impression_type: int


class BookingStore:
    """Queue of bookings; the oldest incomplete one is the active one.

    Opens a connection per call, so the MQTT thread that receives a request and the capture
    thread that works through it can both use one store.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o077)
        try:
            with self._connect() as db:
                db.executescript(_SCHEMA)
        finally:
            os.umask(old)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self._path, timeout=10.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            yield db
        finally:
            db.close()

    def add(self, booking: Booking) -> bool:
        """Queue a booking; False if that reference is already known (a re-sent request)."""
        with self._connect() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO bookings (booking_reference, finger_positions,"
                " impression_type, received_at) VALUES (?, ?, ?, ?)",
                (
                    booking.booking_reference,
                    json.dumps(list(booking.finger_positions)),
                    booking.impression_type,
                    datetime.now(UTC).isoformat(),
                ),
            )
            return cur.rowcount == 1

    def active(self) -> Booking | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT booking_reference, finger_positions, impression_type FROM bookings"
                " WHERE completed_at IS NULL ORDER BY seq LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return Booking(row[0], tuple(int(f) for f in json.loads(row[1])), int(row[2]))

    def complete(self, booking_reference: str) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE bookings SET completed_at = ? WHERE booking_reference = ?",
                (datetime.now(UTC).isoformat(), booking_reference),
            )

    def pending_count(self) -> int:
        with self._connect() as db:
            (n,) = db.execute("SELECT COUNT(*) FROM bookings WHERE completed_at IS NULL").fetchone()
        return int(n)
