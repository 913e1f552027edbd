"""ZFM-protocol sensor on USB bulk endpoints; registered as sensor kind "usb"."""

from __future__ import annotations

import dataclasses

from firmware_bridge.sensor import SensorInfo, register_sensor
from firmware_bridge.transport import ByteTransport
from firmware_bridge.usb_transport import UsbTransport
from firmware_bridge.zfm_protocol import BROADCAST_ADDRESS, SystemParameters
from firmware_bridge.zfm_sensor import ZfmSensor


class UsbSensor(ZfmSensor):
    """A ZFM-family sensor found by USB vendor/product id (and serial number, if given).

    The same device may come back at another bus address after a replug: every :meth:`open`
    searches the bus again.
    """

    transport_kind = "usb"

    def __init__(
        self,
        vendor_id: int,
        product_id: int,
        serial_number: str | None = None,
        address: int = BROADCAST_ADDRESS,
        password: int = 0,
        packet_size: int = 128,
        timeout: float = 2.0,
        ppi: float = 500.0,
        aura_led: bool = False,
    ) -> None:
        if not (0 <= vendor_id <= 0xFFFF and 0 <= product_id <= 0xFFFF):
            raise ValueError("vendor_id and product_id must fit in 16 bits")
        where = f"usb:{vendor_id:04x}:{product_id:04x}"
        super().__init__(
            port=where if serial_number is None else f"{where}:{serial_number}",
            address=address,
            password=password,
            packet_size=packet_size,
            timeout=timeout,
            ppi=ppi,
            baudrate=None,
            aura_led=aura_led,
        )
        self._vendor_id = vendor_id
        self._product_id = product_id
        self._serial_number = serial_number
        self._transport_opened: UsbTransport | None = None

    def _connect(self) -> ByteTransport:
        self._transport_opened = UsbTransport(
            self._vendor_id, self._product_id, self._serial_number
        )
        return self._transport_opened

    def _describe(self, params: SystemParameters) -> SensorInfo:
        info = super()._describe(params)
        assert self._transport_opened is not None  # open() connects before it describes
        found = self._transport_opened.found
        return dataclasses.replace(
            info,
            port=found.location,
            serial_number=found.serial_number,
            extra={**info.extra, "usb_id": f"{found.vendor_id:04x}:{found.product_id:04x}"},
        )


register_sensor("usb", UsbSensor)
