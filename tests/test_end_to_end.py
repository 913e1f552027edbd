"""The whole appliance: simulator on a pty -> daemon process -> Mosquitto -> reference hub."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from edge.outbox import Outbox, RowState
from edge.templates import iso19794_2_2005
from hil.appliance import Appliance, Delivered
from hil.fingers import FingerGenerator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
        reason="mosquitto is not installed (./kiosk.sh test installs it)",
    ),
]


class Fingers:
    """Placement i presents synthetic finger i."""

    def __init__(self) -> None:
        self._generator = FingerGenerator(seed=11)

    def __call__(self, placement: int) -> npt.NDArray[np.uint8]:
        return self._generator.impression_image(placement, 0, width=256, height=288)


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[Appliance]:
    with Appliance(tmp_path, Fingers(), device_id="kiosk-e2e") as app:
        app.start_daemon()
        app.wait_online()
        yield app


def collect(
    app: Appliance, booking: str, fingers: int, got: dict[int, Delivered] | None = None
) -> dict[int, Delivered]:
    """Acks seen from outside until ``fingers`` distinct fingers of the booking are in."""
    got = {} if got is None else got
    while len(got) < fingers:
        d = app.next_delivery(timeout=90)
        if d.booking_reference == booking:
            assert d.status in ("accepted", "duplicate")
            got.setdefault(d.finger_position, d)
    return got


def assert_hub_has_each_finger_once(app: Appliance, booking: str, fingers: list[int]) -> None:
    assert app.hub is not None
    stored = [t for t in app.hub.templates() if t.booking_reference == booking]
    assert sorted(t.finger_position for t in stored) == fingers
    assert len({t.capture_id for t in stored}) == len(fingers)
    for t in stored:
        record = iso19794_2_2005.decode(t.template)
        assert record.views[0].finger_position == t.finger_position
        assert len(record.views[0].minutiae) >= 8


def outbox_counts(app: Appliance) -> dict[RowState, int]:
    outbox = Outbox(app.state_dir / "outbox.sqlite3")
    try:
        return outbox.counts()
    finally:
        outbox.close()


def test_every_booked_finger_arrives_once_as_a_valid_template_and_leaves_the_outbox(
    appliance: Appliance,
) -> None:
    fingers = [1, 2, 3, 4]
    appliance.book("BK-0001", fingers)
    delivered = collect(appliance, "BK-0001", len(fingers))
    assert sorted(delivered) == fingers
    # The daemon kept systemd informed while it worked.
    said = appliance.notifications(until="STATUS=sensor ok; outbox pending 0", timeout=30)
    assert "WATCHDOG=1" in said
    assert appliance.stop_daemon() == 0
    assert_hub_has_each_finger_once(appliance, "BK-0001", fingers)
    counts = outbox_counts(appliance)
    assert counts.get("pending", 0) == 0 and counts.get("sent", 0) == 0
    assert counts.get("acked", 0) == len(fingers)


def test_killing_the_daemon_mid_booking_while_the_hub_is_down_loses_and_duplicates_nothing(
    appliance: Appliance,
) -> None:
    fingers = [1, 2, 3, 4, 5, 6]
    appliance.book("BK-0002", fingers)
    first = collect(appliance, "BK-0002", 2)
    # With the hub down, accepted captures pile up in the outbox unacknowledged...
    appliance.stop_hub()
    appliance.notifications(until=lambda line: line.endswith("outbox pending 2"), timeout=90)
    # ...then the daemon dies without any clean-up, and comes back.
    appliance.kill_daemon()
    appliance.start_daemon()
    appliance.start_hub()
    delivered = collect(appliance, "BK-0002", len(fingers), got=first)
    assert sorted(delivered) == fingers
    # The hub's acks reach the observer and the daemon independently: let the daemon catch up.
    appliance.notifications(until="STATUS=sensor ok; outbox pending 0", timeout=60)
    assert appliance.stop_daemon() == 0
    assert_hub_has_each_finger_once(appliance, "BK-0002", fingers)
    counts = outbox_counts(appliance)
    assert counts.get("pending", 0) == 0 and counts.get("sent", 0) == 0
    assert counts.get("acked", 0) == len(fingers)
