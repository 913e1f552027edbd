"""USB descriptors of the simulated sensor: one configuration, one vendor-specific interface
with a bulk OUT and a bulk IN endpoint, as the kiosk's USB sensors present themselves."""

from __future__ import annotations

import struct
from dataclasses import dataclass

LANGID_EN_US = 0x0409
OUT_ENDPOINT = 0x01
IN_ENDPOINT = 0x81
VENDOR_SPECIFIC_CLASS = 0xFF
_DESCRIPTOR_DEVICE = 1
_DESCRIPTOR_CONFIGURATION = 2
_DESCRIPTOR_STRING = 3
_DESCRIPTOR_INTERFACE = 4
_DESCRIPTOR_ENDPOINT = 5
_BULK = 0x02
_STRING_MANUFACTURER, _STRING_PRODUCT, _STRING_SERIAL = 1, 2, 3


@dataclass(frozen=True)
class UsbIdentity:
    """Who the simulated device says it is."""

    vendor_id: int
    product_id: int
    serial_number: str
    manufacturer: str = "kiosk-edge HIL"
    product: str = "Simulated ZFM fingerprint sensor"
    max_packet_size: int = 512  # high-speed bulk

    def descriptors(self) -> bytes:
        """Device descriptor followed by the configuration: what sysfs ``descriptors`` holds."""
        device = struct.pack(
            "<BBHBBBBHHHBBBB",
            18, _DESCRIPTOR_DEVICE, 0x0200, 0, 0, 0, 64,
            self.vendor_id, self.product_id, 0x0100,
            _STRING_MANUFACTURER, _STRING_PRODUCT, _STRING_SERIAL, 1,
        )
        interface = struct.pack(
            "<BBBBBBBBB", 9, _DESCRIPTOR_INTERFACE, 0, 0, 2, VENDOR_SPECIFIC_CLASS, 0, 0, 0
        )
        endpoints = b"".join(
            struct.pack("<BBBBHB", 7, _DESCRIPTOR_ENDPOINT, address, _BULK,
                        self.max_packet_size, 0)
            for address in (OUT_ENDPOINT, IN_ENDPOINT)
        )
        total = 9 + len(interface) + len(endpoints)
        # Bus powered, 100 mA (bMaxPower counts 2 mA units).
        configuration = struct.pack(
            "<BBHBBBBB", 9, _DESCRIPTOR_CONFIGURATION, total, 1, 1, 0, 0x80, 50
        )
        return device + configuration + interface + endpoints

    def string(self, index: int) -> bytes | None:
        """String descriptor ``index`` (0: the language list); None if there is no such string."""
        if index == 0:
            return struct.pack("<BBH", 4, _DESCRIPTOR_STRING, LANGID_EN_US)
        text = {
            _STRING_MANUFACTURER: self.manufacturer,
            _STRING_PRODUCT: self.product,
            _STRING_SERIAL: self.serial_number,
        }.get(index)
        if text is None:
            return None
        encoded = text.encode("utf-16-le")
        return bytes((2 + len(encoded), _DESCRIPTOR_STRING)) + encoded
