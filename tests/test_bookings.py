"""Bookings queue in SQLite: FIFO, re-sent requests ignored, survives a reopen."""

from __future__ import annotations

import stat
from pathlib import Path

from edge.bookings import Booking, BookingStore


def test_the_oldest_incomplete_booking_is_active_until_completed(tmp_path: Path) -> None:
    store = BookingStore(tmp_path / "bookings.sqlite3")
    assert store.active() is None
    store.add(Booking("BK-1", (1, 2), 0))
    store.add(Booking("BK-2", (6,), 1))
    assert store.active() == Booking("BK-1", (1, 2), 0)
    store.complete("BK-1")
    assert store.active() == Booking("BK-2", (6,), 1)
    assert store.pending_count() == 1


def test_a_re_sent_request_for_a_known_booking_is_ignored(tmp_path: Path) -> None:
    store = BookingStore(tmp_path / "bookings.sqlite3")
    assert store.add(Booking("BK-1", (1, 2), 0))
    assert not store.add(Booking("BK-1", (3, 4), 0))
    store.complete("BK-1")
    assert not store.add(Booking("BK-1", (1, 2), 0))  # completed stays completed
    assert store.active() is None


def test_bookings_survive_reopening_and_the_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "bookings.sqlite3"
    BookingStore(path).add(Booking("BK-9", (10, 9), 0))
    assert BookingStore(path).active() == Booking("BK-9", (10, 9), 0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
