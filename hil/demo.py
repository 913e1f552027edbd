"""``kiosk-edge demo``: the whole appliance on this machine, one line per acknowledged capture."""

from __future__ import annotations

import logging
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge.outbox import Outbox
from edge.templates import iso19794_2_2005
from hil.appliance import Appliance
from hil.fingers import FingerGenerator, Quality

SMUDGED_PLACEMENT = 2  # this placement is a fingertip barely touching: rejected, then recaptured
SKINS: tuple[Quality, ...] = ("good", "dry", "good", "wet")


class DemoFingers:
    """Placement i shows finger i, except one smudged touch that the quality gate must refuse."""

    def __init__(self, seed: int) -> None:
        self._generator = FingerGenerator(seed)

    def __call__(self, placement: int) -> npt.NDArray[np.uint8]:
        finger = placement if placement <= SMUDGED_PLACEMENT else placement - 1
        # Skin varies from person to person and finger to finger; so does the quality score.
        skin = SKINS[finger % len(SKINS)]
        image = self._generator.impression_image(finger, 0, width=256, height=288, quality=skin)
        if placement == SMUDGED_PLACEMENT:
            touched = np.full_like(image, int(np.percentile(image, 99)))
            touched[:56, :56] = image[:56, :56]
            return touched
        return image


def run_demo(fingers: int = 10, seed: int = 7, keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="kiosk-demo-"))
    booking = f"DEMO-{seed:04d}"
    positions = list(range(1, fingers + 1))
    latencies: list[float] = []
    # The hub runs in this process; its per-message log lines would drown the demo's own.
    logging.getLogger("hil.hub").setLevel(logging.WARNING)
    try:
        with Appliance(workdir, DemoFingers(seed)) as app:
            print(f"broker   mosquitto on {app.broker.host}:{app.broker.port}")
            assert app.scanner is not None
            print(f"scanner  simulated ZFM sensor on {app.scanner.path}")
            app.start_daemon()
            app.wait_online()
            print(f"daemon   ready (pid {app.daemon.pid if app.daemon else '?'})")
            print(f"booking  {booking}: fingers {positions}")
            app.book(booking, positions)
            seen: set[int] = set()
            while len(seen) < fingers:
                d = app.next_delivery(timeout=120)
                if d.booking_reference != booking or d.finger_position in seen:
                    continue
                seen.add(d.finger_position)
                record = iso19794_2_2005.decode(d.template)
                count = sum(len(v.minutiae) for v in record.views)
                latencies.append(d.capture_to_ack_ms)
                print(
                    f"capture {d.capture_id}  finger {d.finger_position:2d}  quality "
                    f"{d.quality:3d}  minutiae {count:3d}  capture->ack "
                    f"{d.capture_to_ack_ms:6.0f} ms  ({d.status})"
                )
            code = app.stop_daemon()
            assert app.hub is not None
            stored = [t for t in app.hub.templates() if t.booking_reference == booking]
            counts = Outbox(app.state_dir / "outbox.sqlite3").counts()
            rejected = app.daemon_log.read_text(errors="replace").count(" rejected: ")
            print(
                f"summary  {len(seen)}/{fingers} fingers acked; hub stores {len(stored)} "
                f"templates for the booking ({app.hub.duplicates_seen} duplicates dropped); "
                f"outbox pending {counts.get('pending', 0) + counts.get('sent', 0)}; "
                f"{rejected} capture(s) rejected by the quality gate and taken again; "
                f"median capture->ack {statistics.median(latencies):.0f} ms; "
                f"daemon exit {code}"
            )
            ok = len(stored) == fingers and code == 0
            return 0 if ok else 1
    except (TimeoutError, RuntimeError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if keep:
            print(f"workdir  {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

