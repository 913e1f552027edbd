"""What the HIL scenarios run against: a simulated scanner (pty or mock USB bus) or a real one.

``--hil-device`` picks it (see :func:`parse_hil_device`). A :class:`Rig` hands out an opened
:class:`~firmware_bridge.Sensor` and stages what its target can stage; anything it cannot
(a chosen image on a real glass, a firmware fault) raises :class:`CannotStage` with the reason,
which the scenario suite turns into a skip.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from firmware_bridge.sensor import Sensor
from firmware_bridge.zfm_serial import SerialSensor
from firmware_bridge.zfm_usb import UsbSensor
from hil.simulator.device import ZfmDevice
from hil.simulator.faults import Fault
from hil.simulator.pty_scanner import PtyScanner, ScannerState
from hil.simulator.script import FingerScript

# An image upload on the wire: 36,864 image bytes plus 12 bytes of framing per 128-byte packet.
_UPLOAD_WIRE_BYTES = 36_864 + 288 * 12

# The pty carries bytes at any speed; the simulated UART runs at the sensor's fastest usual
# setting so a throttled image upload (about 3.5 s) keeps the suite short.
_SIM_BAUDRATE = 115200

TargetKind = Literal["sim-serial", "sim-usb", "serial", "usb"]
_SERIAL = re.compile(r"^serial:(?P<port>[^@]+)(@(?P<baud>\d+))?$")
_USB = re.compile(r"^usb:(?P<vid>[0-9a-fA-F]{4}):(?P<pid>[0-9a-fA-F]{4})(:(?P<serial>.+))?$")


class CannotStage(Exception):
    """The target cannot stage what a scenario needs; the message says why."""


@dataclass(frozen=True)
class Target:
    """One device the suite runs against."""

    kind: TargetKind
    port: str | None = None
    baudrate: int = 57600
    vendor_id: int | None = None
    product_id: int | None = None
    serial_number: str | None = None

    @property
    def simulated(self) -> bool:
        return self.kind.startswith("sim-")

    @property
    def name(self) -> str:
        if self.kind == "serial":
            return f"serial:{self.port}@{self.baudrate}"
        if self.kind == "usb":
            serial = f":{self.serial_number}" if self.serial_number else ""
            return f"usb:{self.vendor_id:04x}:{self.product_id:04x}{serial}"
        return self.kind


def parse_hil_device(text: str) -> list[Target]:
    """``sim`` (both simulated links), ``sim-serial``, ``sim-usb``,
    ``serial:/dev/ttyUSB0[@BAUD]`` or ``usb:VID:PID[:SERIAL]`` (hex ids)."""
    if text == "sim":
        return [Target("sim-serial"), Target("sim-usb")]
    if text in ("sim-serial", "sim-usb"):
        return [Target(text)]  # type: ignore[arg-type]
    if match := _SERIAL.match(text):
        baud = match.group("baud")
        return [Target("serial", port=match.group("port"), baudrate=int(baud or 57600))]
    if match := _USB.match(text):
        return [
            Target(
                "usb",
                vendor_id=int(match.group("vid"), 16),
                product_id=int(match.group("pid"), 16),
                serial_number=match.group("serial"),
            )
        ]
    raise ValueError(
        f"--hil-device {text!r}: expected sim, sim-serial, sim-usb, serial:PORT[@BAUD] "
        "or usb:VID:PID[:SERIAL]"
    )


class Rig(abc.ABC):
    """A target with its sensor; :meth:`sensor` is opened on first use, closed by :meth:`close`."""

    timeout = 1.0  # per reply; short, so staged faults cost little

    def __init__(self, target: Target) -> None:
        self.target = target
        self._sensor: Sensor | None = None

    def sensor(self) -> Sensor:
        if self._sensor is None:
            self._sensor = self._make_sensor()
            self._sensor.open()
        return self._sensor

    def close(self) -> None:
        if self._sensor is not None:
            self._sensor.close()
            self._sensor = None

    @abc.abstractmethod
    def _make_sensor(self) -> Sensor: ...

    # Staging: the simulated rigs override these; a real rig cannot.

    def place(self, image: npt.NDArray[np.uint8]) -> None:
        raise CannotStage("a real rig cannot put a chosen image on the glass")

    def add_fault(self, fault: Fault) -> None:
        raise CannotStage("a real rig cannot make its firmware or line misbehave on cue")

    def unplug(self) -> None:
        raise CannotStage("a real rig has no switchable USB power or serial line")

    def replug(self) -> None:
        raise CannotStage("a real rig has no switchable USB power or serial line")

    def slow_down(self) -> None:
        raise CannotStage("a real rig answers at its own speed")

    def full_speed(self) -> None:
        raise CannotStage("a real rig answers at its own speed")

    def wait_until(self, predicate: Callable[[ScannerState], bool], timeout: float) -> bool:
        raise CannotStage("a real rig does not report what it has sent")

    @property
    def state(self) -> ScannerState:
        raise CannotStage("a real rig does not report what it has sent")


class SerialSimRig(Rig):
    """The simulated scanner on a pty, reached by SerialSensor in this process."""

    def __init__(self, target: Target, workdir: Path) -> None:
        super().__init__(target)
        self.scanner = PtyScanner(ZfmDevice(FingerScript()), workdir / "ttyHIL0").start()

    def _make_sensor(self) -> Sensor:
        return SerialSensor(self.scanner.path, baudrate=_SIM_BAUDRATE, timeout=self.timeout)

    def close(self) -> None:
        super().close()
        self.scanner.stop()

    def place(self, image: npt.NDArray[np.uint8]) -> None:
        self.scanner.device.script.place(image)

    def add_fault(self, fault: Fault) -> None:
        self.scanner.device.faults.add(fault)

    def unplug(self) -> None:
        self.scanner.unplug()

    def replug(self) -> None:
        self.scanner.replug()

    def slow_down(self) -> None:
        self.scanner.throttle(_SIM_BAUDRATE)  # a real UART at the configured speed

    def full_speed(self) -> None:
        self.scanner.throttle(None)

    def wait_until(self, predicate: Callable[[ScannerState], bool], timeout: float) -> bool:
        return self.scanner.wait_until(predicate, timeout)

    @property
    def state(self) -> ScannerState:
        return self.scanner.state


class UsbSimRig(Rig):
    """The simulated scanner on a umockdev bus, reached by UsbSensor (pyusb) in a child."""

    def __init__(self, target: Target) -> None:
        from hil.usb.simulator import UsbSimulator

        super().__init__(target)
        self.usb = UsbSimulator(auto_fingers=False).start()

    def _make_sensor(self) -> Sensor:
        from hil.usb.remote import RemoteSensor

        settings = {
            "vendor_id": self.usb.vendor_id,
            "product_id": self.usb.product_id,
            "timeout": self.timeout,
        }
        return RemoteSensor("usb", settings, self.usb.client_env())

    def close(self) -> None:
        sensor, self._sensor = self._sensor, None
        if sensor is not None:
            sensor.close()
            sensor.shutdown()  # type: ignore[attr-defined]
        self.usb.stop()

    def place(self, image: npt.NDArray[np.uint8]) -> None:
        self.usb.place(image)

    def add_fault(self, fault: Fault) -> None:
        self.usb.add_fault(fault)

    def unplug(self) -> None:
        self.usb.unplug()

    def replug(self) -> None:
        self.usb.replug()

    def slow_down(self) -> None:
        # A sensor starved of bus time: one image upload takes a quarter of the reply timeout
        # (the whole allowance a link without a baud rate gets), several times its usual time.
        bytes_per_second = 4 * _UPLOAD_WIRE_BYTES / self.timeout
        self.usb.throttle(int(bytes_per_second * 10))  # as a UART's baud rate: 10 bits a byte

    def full_speed(self) -> None:
        self.usb.throttle(None)

    def wait_until(self, predicate: Callable[[ScannerState], bool], timeout: float) -> bool:
        return self.usb.wait_until(predicate, timeout)

    @property
    def state(self) -> ScannerState:
        return self.usb.state


class RealRig(Rig):
    """A physical sensor on a serial port or USB, opened with the production classes."""

    timeout = 2.0

    def _make_sensor(self) -> Sensor:
        target = self.target
        if target.kind == "serial":
            assert target.port is not None
            return SerialSensor(target.port, baudrate=target.baudrate, timeout=self.timeout)
        assert target.vendor_id is not None and target.product_id is not None
        return UsbSensor(
            target.vendor_id, target.product_id, target.serial_number, timeout=self.timeout
        )


def make_rig(target: Target, workdir: Path) -> Rig:
    if target.kind == "sim-serial":
        return SerialSimRig(target, workdir)
    if target.kind == "sim-usb":
        return UsbSimRig(target)
    return RealRig(target)
