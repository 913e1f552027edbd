"""The Sensor interface on top of a ZFM-family device, whatever link carries its packets."""

from __future__ import annotations

import abc
import logging
import time
from datetime import UTC, datetime
from typing import ClassVar

from firmware_bridge.errors import (
    SensorError,
    SensorOpenError,
    SensorOperationError,
    SensorTimeoutError,
)
from firmware_bridge.sensor import FingerImage, Led, Sensor, SensorInfo
from firmware_bridge.transport import ByteTransport
from firmware_bridge.zfm_client import ZfmClient
from firmware_bridge.zfm_protocol import (
    PACKET_SIZES,
    Confirmation,
    SystemParameters,
    describe_confirmation,
    unpack_image,
)

log = logging.getLogger(__name__)

# GenImg is polled; on hardware each call already takes a few hundred ms, this only keeps a fast
# device (or the simulator) from being hammered.
_POLL_INTERVAL = 0.02

# R503 AuraLedConfig (control, speed, colour, count): control 1 breathing, 2 flashing,
# 3 on, 4 off; colour 1 red, 2 blue, 3 purple; count 0 repeats forever.
_AURA_PATTERNS: dict[Led, tuple[int, int, int, int]] = {
    Led.OFF: (4, 0, 0, 0),
    Led.READY: (1, 0x80, 2, 0),
    Led.BUSY: (3, 0, 3, 0),
    Led.OK: (3, 0, 2, 0),
    Led.ERROR: (2, 0x30, 1, 0),
}


class ZfmSensor(Sensor):
    """A ZFM / R30x / AS608 sensor; subclasses say how to reach it (:meth:`_connect`)."""

    transport_kind: ClassVar[str]

    def __init__(
        self,
        *,
        port: str,
        address: int,
        password: int,
        packet_size: int,
        timeout: float,
        ppi: float,
        baudrate: int | None,
        aura_led: bool,
    ) -> None:
        if packet_size not in PACKET_SIZES:
            raise ValueError(f"packet_size must be one of {PACKET_SIZES}, not {packet_size}")
        if not 0 <= address <= 0xFFFFFFFF or not 0 <= password <= 0xFFFFFFFF:
            raise ValueError("address and password must fit in 4 bytes")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._port = port
        self._address = address
        self._password = password
        self._packet_size = packet_size
        self._timeout = timeout
        self._ppi = ppi
        self._baudrate = baudrate
        self._aura_led = aura_led
        self._transport: ByteTransport | None = None
        self._client: ZfmClient | None = None
        self._info: SensorInfo | None = None
        self._image_taken_at: datetime | None = None

    @abc.abstractmethod
    def _connect(self) -> ByteTransport:
        """Open the link; raises SensorOpenError."""

    def open(self) -> None:
        self.close()
        self._info = None
        transport = self._connect()
        client = ZfmClient(
            transport, address=self._address, timeout=self._timeout, baudrate=self._baudrate
        )
        try:
            params = self._handshake(client)
        except SensorError as exc:
            transport.close()
            if isinstance(exc, SensorOpenError):
                raise
            raise SensorOpenError(f"{self._port}: handshake failed: {exc}") from exc
        self._transport = transport
        self._client = client
        self._info = self._describe(params)
        log.info("sensor %s open on %s", self._info.identity, self._port)

    def close(self) -> None:
        transport, self._transport, self._client = self._transport, None, None
        self._image_taken_at = None
        if transport is not None:
            transport.close()

    @property
    def info(self) -> SensorInfo:
        if self._info is None:
            raise SensorOperationError("sensor has not been opened")
        return self._info

    def wait_for_finger(self, timeout: float) -> bool:
        client = self._require_client()
        deadline = time.monotonic() + timeout
        while True:
            code = client.gen_img()
            if code == Confirmation.OK:
                self._image_taken_at = datetime.now(UTC)
                return True
            if code != Confirmation.NO_FINGER:
                raise SensorOperationError(f"GenImg failed: {describe_confirmation(code)}", code)
            if not self._pause_until(deadline):
                return False

    def wait_for_lift(self, timeout: float) -> bool:
        client = self._require_client()
        # Each GenImg that sees the finger overwrites the image buffer.
        self._image_taken_at = None
        deadline = time.monotonic() + timeout
        while True:
            code = client.gen_img()
            if code == Confirmation.NO_FINGER:
                return True
            if code != Confirmation.OK:
                raise SensorOperationError(f"GenImg failed: {describe_confirmation(code)}", code)
            if not self._pause_until(deadline):
                return False

    def capture(self) -> FingerImage:
        client = self._require_client()
        taken_at, self._image_taken_at = self._image_taken_at, None
        if taken_at is None:
            raise SensorOperationError(
                "no image to upload: wait_for_finger() has not succeeded since the last capture"
            )
        packed = client.up_image(self._packet_size)  # open() checked the device agrees
        return FingerImage(
            pixels=unpack_image(packed),
            ppi=self._ppi,
            sensor=self.info.identity,
            captured_at=taken_at,
        )

    def set_led(self, state: Led) -> None:
        # The basic R30x / AS608 has no LED command: its LED follows the imaging itself.
        if self._aura_led:
            self._require_client().aura_led(*_AURA_PATTERNS[state])

    def _handshake(self, client: ZfmClient) -> SystemParameters:
        try:
            code = client.verify_password(self._password)
        except SensorTimeoutError as exc:
            raise SensorOpenError(
                f"{self._port}: no reply to the password check; is the sensor powered and wired, "
                f"and are baud rate ({self._baudrate}) and address (0x{self._address:08X}) right?"
            ) from exc
        if code == Confirmation.WRONG_PASSWORD:
            raise SensorOpenError(f"{self._port}: the sensor rejected the configured password")
        if code != Confirmation.OK:
            raise SensorOpenError(
                f"{self._port}: password check failed: {describe_confirmation(code)}"
            )
        params = client.read_system_parameters()
        if params.packet_size != self._packet_size:
            raise SensorOpenError(
                f"{self._port}: the sensor sends {params.packet_size}-byte data packets, "
                f"configured for {self._packet_size}"
            )
        return params

    def _describe(self, params: SystemParameters) -> SensorInfo:
        return SensorInfo(
            model=f"ZFM-compatible (system id 0x{params.system_id:04X})",
            transport=self.transport_kind,
            port=self._port,
            identity=f"zfm:{params.system_id:04x}:{params.address:08x}",
            address=params.address,
            packet_size=params.packet_size,
            baudrate=self._baudrate,
            library_size=params.library_size,
            security_level=params.security_level,
            system_id=params.system_id,
            extra={
                "status_register": params.status_register,
                "reported_baudrate": params.baudrate,
            },
        )

    def _require_client(self) -> ZfmClient:
        if self._client is None:
            raise SensorOperationError(f"{self._port}: sensor is not open")
        return self._client

    @staticmethod
    def _pause_until(deadline: float) -> bool:
        """Wait one poll interval; False once the deadline has passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(_POLL_INTERVAL, remaining))
        return True
