"""A Sensor living in a child process, driven from this one over a pipe.

USB clients must run with umockdev's preload library loaded from process start, so tests keep
the testbed here and the sensor (unmodified pyusb/libusb) in a child started with the
testbed's environment. The proxy raises the same :mod:`firmware_bridge.errors` classes.
Run as ``python -m hil.usb.remote KIND SETTINGS_JSON`` (the child side).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from datetime import datetime
from typing import Any

import numpy as np

from firmware_bridge import errors
from firmware_bridge.sensor import FingerImage, Led, Sensor, SensorInfo, make_sensor

_ERRORS: dict[str, type[errors.SensorError]] = {
    cls.__name__: cls
    for cls in (
        errors.SensorError,
        errors.SensorOpenError,
        errors.SensorOperationError,
        errors.SensorProtocolError,
        errors.SensorTimeoutError,
        errors.SensorDisconnectedError,
    )
}


class RemoteSensor(Sensor):
    """Proxy for ``make_sensor(kind, **settings)`` running in a child with ``env``.

    Each call waits at most ``call_timeout`` s for the child's answer; the child's own timeouts
    are shorter, so this only catches a hung child.
    """

    def __init__(
        self,
        kind: str,
        settings: dict[str, Any],
        env: dict[str, str],
        call_timeout: float = 30.0,
    ) -> None:
        self._call_timeout = call_timeout
        self._info: SensorInfo | None = None
        self._process = subprocess.Popen(
            [sys.executable, "-m", "hil.usb.remote", kind, json.dumps(settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )

    def shutdown(self) -> None:
        """End the child process (closing the sensor there)."""
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)

    def open(self) -> None:
        self._info = SensorInfo(**self._call("open"))

    def close(self) -> None:
        if self._process.poll() is None:
            self._call("close")

    @property
    def info(self) -> SensorInfo:
        if self._info is None:
            raise errors.SensorOperationError("sensor has not been opened")
        return self._info

    def wait_for_finger(self, timeout: float) -> bool:
        return bool(self._call("wait_for_finger", timeout))

    def wait_for_lift(self, timeout: float) -> bool:
        return bool(self._call("wait_for_lift", timeout))

    def capture(self) -> FingerImage:
        reply = self._call("capture")
        pixels = np.frombuffer(base64.b64decode(reply["pixels"]), dtype=np.uint8)
        return FingerImage(
            pixels=pixels.reshape(reply["height"], reply["width"]).copy(),
            ppi=reply["ppi"],
            sensor=reply["sensor"],
            captured_at=datetime.fromisoformat(reply["captured_at"]),
        )

    def set_led(self, state: Led) -> None:
        self._call("set_led", state.value)

    def _call(self, method: str, *args: Any) -> Any:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps([method, *args]) + "\n")
        self._process.stdin.flush()
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self._process.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(self._call_timeout)
        if reader.is_alive() or not line or not line[0]:
            self._process.kill()
            raise RuntimeError(f"sensor process gave no answer to {method}")
        reply = json.loads(line[0])
        if "error" in reply:
            cls = _ERRORS.get(reply["error"], errors.SensorError)
            if issubclass(cls, errors.SensorOperationError):
                raise cls(reply["message"], reply.get("code"))
            raise cls(reply["message"])
        return reply["result"]


def _serve(kind: str, settings: dict[str, Any]) -> None:
    sensor = make_sensor(kind, **settings)
    for line in sys.stdin:
        method, *args = json.loads(line)
        try:
            result = _dispatch(sensor, method, args)
            reply: dict[str, Any] = {"result": result}
        except errors.SensorError as exc:
            reply = {
                "error": type(exc).__name__,
                "message": str(exc),
                "code": getattr(exc, "code", None),
            }
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    sensor.close()


def _dispatch(sensor: Sensor, method: str, args: list[Any]) -> Any:
    if method == "open":
        sensor.open()
        info = sensor.info
        return {name: getattr(info, name) for name in SensorInfo.__dataclass_fields__}
    if method == "close":
        sensor.close()
        return None
    if method == "wait_for_finger":
        return sensor.wait_for_finger(float(args[0]))
    if method == "wait_for_lift":
        return sensor.wait_for_lift(float(args[0]))
    if method == "capture":
        image = sensor.capture()
        return {
            "pixels": base64.b64encode(image.pixels.tobytes()).decode(),
            "height": image.height,
            "width": image.width,
            "ppi": image.ppi,
            "sensor": image.sensor,
            "captured_at": image.captured_at.isoformat(),
        }
    if method == "set_led":
        sensor.set_led(Led(args[0]))
        return None
    raise ValueError(f"unknown method {method!r}")


if __name__ == "__main__":
    _serve(sys.argv[1], json.loads(sys.argv[2]))
