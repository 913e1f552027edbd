"""ZFM / R30x / AS608 sensor on a serial port; registered as sensor kind "serial"."""

from __future__ import annotations

from firmware_bridge.sensor import register_sensor
from firmware_bridge.serial_transport import SerialTransport
from firmware_bridge.transport import ByteTransport
from firmware_bridge.zfm_protocol import BROADCAST_ADDRESS
from firmware_bridge.zfm_sensor import ZfmSensor


class SerialSensor(ZfmSensor):
    """A ZFM-family sensor behind a UART (``port`` may be a symlink, e.g. a udev alias).

    ``aura_led`` enables the R503's AuraLedConfig command for :meth:`set_led`.
    """

    transport_kind = "serial"

    def __init__(
        self,
        port: str,
        baudrate: int = 57600,
        address: int = BROADCAST_ADDRESS,
        password: int = 0,
        packet_size: int = 128,
        timeout: float = 2.0,
        ppi: float = 500.0,
        aura_led: bool = False,
    ) -> None:
        super().__init__(
            port=port,
            address=address,
            password=password,
            packet_size=packet_size,
            timeout=timeout,
            ppi=ppi,
            baudrate=baudrate,
            aura_led=aura_led,
        )

    def _connect(self) -> ByteTransport:
        assert self._baudrate is not None
        return SerialTransport(self._port, self._baudrate)


register_sensor("serial", SerialSensor)
