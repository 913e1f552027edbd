"""The USB simulator process: a umockdev testbed with the simulated sensor, driven over stdio.

Started by :class:`hil.usb.simulator.UsbSimulator` with umockdev's preload library. Commands
arrive as JSON lines on stdin (``{"id": n, "op": ..., "args": {...}}``); replies and every
change of the device's state go out as JSON lines on stdout.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from hil.simulator.device import ZfmDevice
from hil.simulator.pty_scanner import ScannerState
from hil.simulator.script import (
    SERVING_ARRIVAL_WAIT,
    DirectoryImages,
    FingerScript,
    ImageSource,
    RidgeImages,
)
from hil.usb.testbed import UsbTestbed
from hil.usb.wire import decode_fault, decode_image, encode_state


def generated_fingers(seed: int) -> ImageSource:
    """Placement i shows synthetic finger i, first impression (as the end-to-end tests use)."""
    from hil.fingers import FingerGenerator

    generator = FingerGenerator(seed=seed)
    return lambda index: generator.impression_image(index, 0, width=256, height=288)


class _Server:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._write_lock = threading.Lock()
        self._testbed: UsbTestbed | None = None
        self._latest: ScannerState | None = None
        self._state_changed = threading.Condition()
        threading.Thread(target=self._send_states, name="state", daemon=True).start()

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message)
        with self._write_lock:
            self._out.write(line + "\n")
            self._out.flush()

    def publish(self, state: ScannerState) -> None:
        # Called on umockdev's worker thread for every transfer: hand over, never block it.
        with self._state_changed:
            self._latest = state
            self._state_changed.notify()

    def _send_states(self) -> None:
        """Send the newest state whenever it changed; states in between are skipped."""
        while True:
            with self._state_changed:
                self._state_changed.wait_for(lambda: self._latest is not None)
                state, self._latest = self._latest, None
            assert state is not None
            self.send({"state": encode_state(state)})

    def start(self, args: dict[str, Any]) -> dict[str, Any]:
        source: ImageSource
        if args.get("image_dir"):
            source = DirectoryImages(Path(args["image_dir"]))
        elif args.get("generator_seed") is not None:
            source = generated_fingers(int(args["generator_seed"]))
        else:
            source = RidgeImages(int(args.get("seed", 0)))
        device = ZfmDevice(
            FingerScript(
                source if args.get("auto_fingers", True) else None,
                args.get("limit"),
                arrival_wait=SERVING_ARRIVAL_WAIT,
            ),
            password=int(args.get("password", 0)),
            packet_size=int(args.get("packet_size", 128)),
            aura_led=bool(args.get("aura_led", False)),
        )
        testbed = UsbTestbed(
            device,
            vendor_id=int(args["vendor_id"]),
            product_id=int(args["product_id"]),
            serial_number=str(args["serial_number"]),
        )
        testbed.link.listener = self.publish
        self._testbed = testbed.start()
        return {"root_dir": testbed.root_dir}

    def handle(self, op: str, args: dict[str, Any]) -> Any:
        if op == "start":
            return self.start(args)
        testbed = self._testbed
        if testbed is None:
            raise RuntimeError("simulator not started")
        if op == "unplug":
            testbed.unplug()
        elif op == "replug":
            testbed.replug()
        elif op == "stall_in":
            testbed.link.stall_in(int(args["times"]))
        elif op == "io_error_in":
            testbed.link.io_error_in(int(args["times"]))
        elif op == "throttle":
            testbed.link.throttle(args["bytes_per_second"])
        elif op == "add_fault":
            testbed.device.faults.add(decode_fault(args))
        elif op == "clear_faults":
            testbed.device.faults.clear()
        elif op == "place":
            testbed.device.script.place(decode_image(args))
        elif op == "stop":
            testbed.stop()
            self._testbed = None
        else:
            raise ValueError(f"unknown operation {op!r}")
        return None

    def run(self, commands: TextIO) -> None:
        for line in commands:
            request = json.loads(line)
            try:
                result = self.handle(request["op"], request.get("args", {}))
            except Exception as exc:  # reported to the controller, which raises it there
                self.send({"reply": request["id"], "error": f"{type(exc).__name__}: {exc}"})
            else:
                self.send({"reply": request["id"], "result": result})
        if self._testbed is not None:
            self._testbed.stop()


if __name__ == "__main__":
    _Server(sys.stdout).run(sys.stdin)
