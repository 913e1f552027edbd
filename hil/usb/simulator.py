"""Control the USB simulator process from a test: plug, unplug, faults, fingers, state.

It mirrors :class:`hil.simulator.PtyScanner` (``state``, ``wait_until``, ``unplug``,
``replug``, ``throttle``) so scenarios can stage the same things on either link.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from hil.simulator.faults import Fault
from hil.simulator.pty_scanner import ScannerState
from hil.usb.testbed import (
    PRELOAD_LIBRARY,
    SIMULATED_PRODUCT_ID,
    SIMULATED_VENDOR_ID,
    unavailable_reason,
)
from hil.usb.wire import decode_state, encode_fault, encode_image

_BITS_PER_BYTE = 10


class UsbSimulator:
    """The simulated sensor on a mock USB bus, in its own process; use as a context manager.

    ``image_dir`` (else synthetic fingers from ``generator_seed``, else ridges from ``seed``)
    supplies a finger whenever the host looks; with
    ``auto_fingers=False`` only :meth:`place` puts fingers down.
    """

    def __init__(
        self,
        *,
        vendor_id: int = SIMULATED_VENDOR_ID,
        product_id: int = SIMULATED_PRODUCT_ID,
        serial_number: str = "SIM0001",
        image_dir: Path | None = None,
        generator_seed: int | None = None,
        seed: int = 0,
        auto_fingers: bool = True,
        password: int = 0,
        packet_size: int = 128,
        reply_timeout: float = 30.0,
    ) -> None:
        self.vendor_id = vendor_id
        self.product_id = product_id
        self.serial_number = serial_number
        self._start_args: dict[str, Any] = {
            "vendor_id": vendor_id,
            "product_id": product_id,
            "serial_number": serial_number,
            "image_dir": str(image_dir) if image_dir is not None else None,
            "generator_seed": generator_seed,
            "seed": seed,
            "auto_fingers": auto_fingers,
            "password": password,
            "packet_size": packet_size,
        }
        self._reply_timeout = reply_timeout
        self._cond = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._state: ScannerState | None = None
        self._next_id = 0
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._root_dir = ""
        self._exited = False

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> UsbSimulator:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        env = dict(os.environ)
        env.pop("UMOCKDEV_DIR", None)
        env["LD_PRELOAD"] = f"{PRELOAD_LIBRARY} {env.get('LD_PRELOAD', '')}".strip()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "hil.usb.serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="usb-simulator", daemon=True)
        self._reader.start()
        try:
            self._root_dir = self._call("start", self._start_args)["root_dir"]
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        try:
            process.stdin.close()
            process.wait(15)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait(15)
        if self._reader is not None:
            self._reader.join(15)

    def __enter__(self) -> UsbSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a process whose libusb should see the simulated bus."""
        env = dict(os.environ if base is None else base)
        env["LD_PRELOAD"] = f"{PRELOAD_LIBRARY} {env.get('LD_PRELOAD', '')}".strip()
        env["UMOCKDEV_DIR"] = self._root_dir
        return env

    @property
    def hil_device(self) -> str:
        """This device as a ``--hil-device`` / config target."""
        return f"usb:{self.vendor_id:04x}:{self.product_id:04x}"

    # --- staging -----------------------------------------------------------------------------

    def unplug(self) -> None:
        self._call("unplug")

    def replug(self) -> None:
        self._call("replug")

    def throttle(self, baudrate: int | None) -> None:
        """Send no faster than a UART at ``baudrate`` would (None: full speed)."""
        self._call(
            "throttle",
            {"bytes_per_second": None if baudrate is None else baudrate / _BITS_PER_BYTE},
        )

    def stall_in(self, times: int = 1) -> None:
        self._call("stall_in", {"times": times})

    def io_error_in(self, times: int = 1) -> None:
        self._call("io_error_in", {"times": times})

    def add_fault(self, fault: Fault) -> None:
        self._call("add_fault", encode_fault(fault))

    def clear_faults(self) -> None:
        self._call("clear_faults")

    def place(self, image: npt.NDArray[np.uint8]) -> None:
        self._call("place", encode_image(image))

    @property
    def state(self) -> ScannerState:
        with self._cond:
            if self._state is None:
                raise RuntimeError("simulator has not reported its state yet")
            return self._state

    def wait_until(self, predicate: Callable[[ScannerState], bool], timeout: float) -> bool:
        """Block until ``predicate(state)`` holds; False after ``timeout`` s or if it exits."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._exited or (self._state is not None and predicate(self._state)),
                timeout,
            ) and not self._exited

    # --- plumbing ----------------------------------------------------------------------------

    def _call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        process = self._process
        if process is None or process.stdin is None:
            raise RuntimeError("simulator is not running")
        with self._cond:
            self._next_id += 1
            request_id = self._next_id
        process.stdin.write(json.dumps({"id": request_id, "op": op, "args": args or {}}) + "\n")
        process.stdin.flush()
        with self._cond:
            if not self._cond.wait_for(
                lambda: request_id in self._replies or self._exited, self._reply_timeout
            ) or request_id not in self._replies:
                raise RuntimeError(f"USB simulator gave no answer to {op}")
            reply = self._replies.pop(request_id)
        if "error" in reply:
            raise RuntimeError(f"USB simulator failed {op}: {reply['error']}")
        return reply["result"]

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        try:
            for line in self._process.stdout:
                message = json.loads(line)
                with self._cond:
                    if "state" in message:
                        self._state = decode_state(message["state"])
                    else:
                        self._replies[message["reply"]] = message
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._exited = True
                self._cond.notify_all()
