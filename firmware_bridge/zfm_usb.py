"""ZFM-protocol sensor on USB bulk endpoints; registered as sensor kind "usb"."""

from __future__ import annotations

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
        self._found_at: UsbTransport | None = None

    def _connect(self) -> ByteTransport:
        transport = UsbTransport(self._vendor_id, self._product_id, self._serial_number)
        self._found_at = transport
        return transport

    def _describe(self, params: SystemParameters) -> SensorInfo:
        info = super()._describe(params)
        found = self._found_at.found if self._found_at is not None else None
        if found is None:
            return info
        return SensorInfo(
            model=info.model,
            transport=info.transport,
            port=found.location,
            identity=info.identity,
            serial_number=found.serial_number,
            address=info.address,
            packet_size=info.packet_size,
            baudrate=None,
            library_size=info.library_size,
            security_level=info.security_level,
            system_id=info.system_id,
            extra={**info.extra, "usb_id": f"{found.vendor_id:04x}:{found.product_id:04x}"},
        )


register_sensor("usb", UsbSensor)
