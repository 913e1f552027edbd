"""The outbox keeps every capture until the hub acks it, and survives being killed."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.ids import new_capture_id
from edge.outbox import Outbox, OutboxError, OutboxRow
from edge.wire import TemplateMessage

REPO = Path(__file__).resolve().parents[1]


def capture(booking: str = "BK-1", finger: int = 1) -> TemplateMessage:
    return TemplateMessage.build(
        template_bytes=b"FMR\x00 20\x00" + bytes(20),
        capture_id=new_capture_id(),
        device_id="kiosk-01",
        booking_reference=booking,
        finger_position=finger,
        impression_type=0,
        quality=60,
        captured_at=datetime.now(UTC),
        sensor="sim",
        model_version="m1",
    )


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    yield box
    box.close()


def row_of(outbox: Outbox, capture_id: str) -> OutboxRow:
    row = outbox.get(capture_id)
    assert row is not None
    return row


def test_an_added_capture_is_pending_with_its_payload(outbox: Outbox) -> None:
    message = capture()
    assert outbox.add(message)
    [row] = outbox.pending(10)
    assert (row.capture_id, row.state, row.attempts) == (message.capture_id, "pending", 0)
    assert row.payload == message.to_payload()
    assert row.booking_reference == "BK-1" and row.finger_position == 1


def test_adding_the_same_capture_twice_keeps_one_row(outbox: Outbox) -> None:
    message = capture()
    assert outbox.add(message)
    assert not outbox.add(message)
    assert outbox.counts()["pending"] == 1


def test_pending_returns_the_oldest_first_up_to_the_limit(outbox: Outbox) -> None:
    messages = [capture(finger=f) for f in range(1, 6)]
    for m in messages:
        outbox.add(m)
    assert [r.capture_id for r in outbox.pending(3)] == [m.capture_id for m in messages[:3]]


def test_a_capture_goes_pending_sent_acked_and_its_payload_is_wiped(outbox: Outbox) -> None:
    message = capture()
    outbox.add(message)
    assert outbox.mark_sent(message.capture_id)
    row = outbox.get(message.capture_id)
    assert row is not None and row.state == "sent" and row.attempts == 1
    assert row.sent_at is not None
    assert outbox.pending(10) == []
    assert outbox.mark_acked(message.capture_id)
    row = outbox.get(message.capture_id)
    assert row is not None and row.state == "acked" and row.payload is None
    assert row.acked_at is not None
    assert outbox.counts() == {"pending": 0, "sent": 0, "acked": 1, "rejected": 0}


def test_a_late_duplicate_ack_is_harmless(outbox: Outbox) -> None:
    message = capture()
    outbox.add(message)
    outbox.mark_sent(message.capture_id)
    assert outbox.mark_acked(message.capture_id)
    assert not outbox.mark_acked(message.capture_id)
    assert not outbox.mark_rejected(message.capture_id, "late")
    assert not outbox.mark_acked(new_capture_id())  # unknown id
    row = outbox.get(message.capture_id)
    assert row is not None and row.state == "acked"


def test_a_failed_send_returns_to_pending_with_the_error(outbox: Outbox) -> None:
    message = capture()
    outbox.add(message)
    outbox.mark_sent(message.capture_id)
    assert outbox.mark_failed(message.capture_id, "broker refused: Not authorized (0x87)")
    [row] = outbox.pending(10)
    assert row.last_error == "broker refused: Not authorized (0x87)"
    assert row.attempts == 1 and row.payload == message.to_payload()
    outbox.mark_sent(message.capture_id)
    assert row_of(outbox, message.capture_id).attempts == 2


def test_only_a_sent_capture_can_fail(outbox: Outbox) -> None:
    message = capture()
    outbox.add(message)
    assert not outbox.mark_failed(message.capture_id, "x")
    outbox.mark_sent(message.capture_id)
    outbox.mark_acked(message.capture_id)
    assert not outbox.mark_failed(message.capture_id, "x")
    assert row_of(outbox, message.capture_id).state == "acked"


def test_a_rejected_capture_is_kept_counted_and_never_pending_again(outbox: Outbox) -> None:
    message = capture()
    outbox.add(message)
    outbox.mark_sent(message.capture_id)
    assert outbox.mark_rejected(message.capture_id, "template: bad magic")
    assert outbox.requeue_sent() == 0
    assert outbox.pending(10) == []
    row = outbox.get(message.capture_id)
    assert row is not None and row.state == "rejected" and row.last_error == "template: bad magic"
    assert row.payload == message.to_payload()
    assert outbox.counts()["rejected"] == 1


def test_requeue_returns_every_sent_capture_to_pending(outbox: Outbox) -> None:
    sent, waiting = capture(finger=1), capture(finger=2)
    outbox.add(sent)
    outbox.add(waiting)
    outbox.mark_sent(sent.capture_id)
    assert outbox.requeue_sent() == 1
    assert {r.capture_id for r in outbox.pending(10)} == {sent.capture_id, waiting.capture_id}


def test_undelivered_counts_pending_and_sent(outbox: Outbox) -> None:
    messages = [capture(finger=f) for f in (1, 2, 3)]
    for m in messages:
        outbox.add(m)
    outbox.mark_sent(messages[0].capture_id)
    outbox.mark_sent(messages[1].capture_id)
    outbox.mark_acked(messages[1].capture_id)
    assert outbox.undelivered() == 2


def test_fingers_done_lists_a_bookings_fingers_in_any_state(outbox: Outbox) -> None:
    acked, rejected, pending = capture("BK-1", 1), capture("BK-1", 6), capture("BK-1", 2)
    for m in (acked, rejected, pending, capture("BK-2", 3)):
        outbox.add(m)
    outbox.mark_acked(acked.capture_id)
    outbox.mark_rejected(rejected.capture_id, "bad")
    assert outbox.fingers_done("BK-1") == {1, 2, 6}
    assert outbox.fingers_done("BK-9") == set()


def test_purge_removes_only_acked_tombstones_older_than_the_cutoff(outbox: Outbox) -> None:
    old, pending = capture(finger=1), capture(finger=2)
    outbox.add(old)
    outbox.add(pending)
    outbox.mark_acked(old.capture_id)
    assert outbox.purge_acked(datetime.now(UTC) - timedelta(hours=1)) == 0
    assert outbox.purge_acked(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert outbox.get(old.capture_id) is None
    assert outbox.get(pending.capture_id) is not None


def test_two_connections_see_each_others_commits(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as writer, Outbox(path) as reader:
        message = capture()
        writer.add(message)
        assert [r.capture_id for r in reader.pending(10)] == [message.capture_id]


def test_the_database_and_its_wal_files_are_private_to_the_owner(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "outbox.sqlite3"
        with Outbox(path) as box:
            box.add(capture())
            files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
            for f in files:
                assert f.exists(), f
                assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    finally:
        os.umask(old_umask)


def test_an_existing_file_with_loose_permissions_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    Outbox(path).close()
    path.chmod(0o644)
    Outbox(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_schema_version_is_recorded_and_a_newer_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    Outbox(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        db.execute("PRAGMA user_version=99")
    with pytest.raises(OutboxError, match="schema version 99"):
        Outbox(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError):
        Outbox(path)


def test_the_journal_is_write_ahead_logging(outbox: Outbox) -> None:
    with sqlite3.connect(outbox.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from pathlib import Path
    from edge.ids import new_capture_id
    from edge.outbox import Outbox
    from edge.wire import TemplateMessage

    box = Outbox(Path(sys.argv[1]))
    while True:
        message = TemplateMessage.build(
            template_bytes=bytes(300), capture_id=new_capture_id(), device_id="k",
            booking_reference="BK-crash", finger_position=1, impression_type=0, quality=50,
            captured_at=datetime.now(UTC), sensor="sim", model_version="m1")
        box.add(message)
        print(message.capture_id, flush=True)
    """
)


def test_every_capture_reported_committed_survives_sigkill_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    committed = []
    try:
        for line in writer.stdout:
            committed.append(line.strip())
            if len(committed) == 200:
                break
    finally:
        writer.send_signal(signal.SIGKILL)  # mid-write: the child is still in its loop
        writer.wait()
    assert len(committed) == 200
    with Outbox(path) as box:
        for capture_id in committed:
            row = box.get(capture_id)
            assert row is not None and row.state == "pending" and row.payload is not None
