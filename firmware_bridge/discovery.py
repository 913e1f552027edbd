"""Which supported sensors are attached: USB sensors on the bus and USB-UART bridges' ttys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from serial.tools import list_ports

from firmware_bridge.errors import SensorOpenError
from firmware_bridge.usb_devices import SUPPORTED_DEVICES, find_supported
from firmware_bridge.usb_transport import find_devices


@dataclass(frozen=True)
class AttachedSensor:
    """One supported device found; ``port`` is what the configuration names (tty or bus:addr)."""

    transport: Literal["usb", "serial"]
    vendor_id: int
    product_id: int
    serial_number: str | None
    port: str
    name: str


@dataclass(frozen=True)
class Discovery:
    sensors: list[AttachedSensor]
    problems: list[str]  # a bus that could not be searched, and why


def discover() -> Discovery:
    """Search USB and the serial ports for every device in the supported-device table."""
    sensors: list[AttachedSensor] = []
    problems: list[str] = []
    for device in SUPPORTED_DEVICES:
        if device.transport != "usb":
            continue
        try:
            found = find_devices(device.vendor_id, device.product_id)
        except SensorOpenError as exc:
            problems.append(f"USB: {exc}")
            break
        sensors.extend(
            AttachedSensor("usb", f.vendor_id, f.product_id, f.serial_number, f.location,
                           device.name)
            for f in found
        )
    for port in list_ports.comports():
        if port.vid is None or port.pid is None:
            continue
        supported = find_supported(port.vid, port.pid)
        if supported is not None and supported.transport == "serial":
            sensors.append(
                AttachedSensor("serial", port.vid, port.pid, port.serial_number, port.device,
                               supported.name)
            )
    return Discovery(sensors, problems)
