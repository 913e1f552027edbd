"""Run the simulated scanner until SIGINT or SIGTERM: the body of ``kiosk-edge simulate``."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TextIO

from firmware_bridge.zfm_protocol import BROADCAST_ADDRESS
from hil.simulator.device import ZfmDevice
from hil.simulator.pty_scanner import PtyScanner
from hil.simulator.script import (
    SERVING_ARRIVAL_WAIT,
    DirectoryImages,
    FingerScript,
    ImageSource,
    RidgeImages,
)


def serve_forever(
    link: Path | None = None,
    image_dir: Path | None = None,
    seed: int = 0,
    *,
    source: ImageSource | None = None,
    address: int = BROADCAST_ADDRESS,
    password: int = 0,
    packet_size: int = 128,
    baudrate: int | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """Serve fingers from ``image_dir`` (else ``source``, else plain synthetic ridges) forever.

    ``link`` is the stable path clients open (e.g. /tmp/kiosk/ttyUSB0). ``baudrate`` throttles
    the replies to a real UART's speed. Call from the main thread (it installs signal handlers).
    """
    if image_dir is not None:
        source = DirectoryImages(image_dir)
    elif source is None:
        source = RidgeImages(seed)
    device = ZfmDevice(
        FingerScript(source, arrival_wait=SERVING_ARRIVAL_WAIT),
        address=address,
        password=password,
        packet_size=packet_size,
        seed=seed,
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with PtyScanner(device, link) as scanner:
            scanner.throttle(baudrate)
            where = scanner.slave_path + (f" (link {link})" if link is not None else "")
            print(f"simulated fingerprint scanner on {where}", file=out, flush=True)
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
