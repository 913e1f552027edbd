"""The sensors the kiosk supports, by USB vendor/product id: one table for the driver, discovery,
the udev rule (``systemd/70-kiosk-sensor.rules``, checked against this table by a test) and
the ``kiosk-edge sensor`` commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SupportedDevice:
    """One supported USB id.

    ``transport`` "usb": a ZFM-protocol sensor on a vendor-specific interface with bulk
    endpoints (:mod:`firmware_bridge.usb_transport`). "serial": a USB-UART bridge whose tty
    carries a ZFM module's UART (:mod:`firmware_bridge.serial_transport`).
    """

    vendor_id: int
    product_id: int
    transport: Literal["usb", "serial"]
    name: str

    @property
    def usb_id(self) -> str:
        return f"{self.vendor_id:04x}:{self.product_id:04x}"


SUPPORTED_DEVICES: tuple[SupportedDevice, ...] = (
    # pid.codes test id, used by the HIL USB simulator and by bench rigs flashed with the
    # ZFM-over-bulk firmware until a production id is assigned.
    SupportedDevice(0x1209, 0x0001, "usb", "ZFM-compatible sensor, bulk endpoints (test id)"),
    # USB-UART bridges that R30x / AS608 modules ship with.
    SupportedDevice(0x1A86, 0x7523, "serial", "ZFM module via WCH CH340 USB-UART"),
    SupportedDevice(0x10C4, 0xEA60, "serial", "ZFM module via Silicon Labs CP210x USB-UART"),
    SupportedDevice(0x0403, 0x6001, "serial", "ZFM module via FTDI FT232R USB-UART"),
    SupportedDevice(0x067B, 0x2303, "serial", "ZFM module via Prolific PL2303 USB-UART"),
)


def find_supported(vendor_id: int, product_id: int) -> SupportedDevice | None:
    """The table entry for this id, if the kiosk supports it."""
    for device in SUPPORTED_DEVICES:
        if (device.vendor_id, device.product_id) == (vendor_id, product_id):
            return device
    return None
