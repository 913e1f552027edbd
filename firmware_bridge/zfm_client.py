"""Command/reply exchanges with one ZFM-family device over any ByteTransport."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from firmware_bridge.errors import SensorOperationError, SensorProtocolError, SensorTimeoutError
from firmware_bridge.transport import ByteTransport
from firmware_bridge.zfm_protocol import (
    FRAME_OVERHEAD,
    IMAGE_BYTES,
    Command,
    Confirmation,
    Packet,
    PacketId,
    PacketParser,
    SystemParameters,
    command_packet,
    describe_confirmation,
    encode_packet,
)

log = logging.getLogger(__name__)

_READ_CHUNK = 4096
# After a garbled exchange, the line counts as clean once it has been silent this long. It covers
# several full packets at 57,600 baud, so the tail of a reply in flight is not mistaken for the
# next one.
_QUIET_PERIOD = 0.1
_BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop


@dataclass(frozen=True)
class Ack:
    """An acknowledgement: the confirmation code and what follows it."""

    code: int
    data: bytes

    @property
    def ok(self) -> bool:
        return self.code == Confirmation.OK


def command_name(code: int) -> str:
    try:
        return Command(code).name
    except ValueError:
        return f"command 0x{code:02X}"


class ZfmClient:
    """Sends commands and checks replies; every call ends by its deadline.

    ``timeout`` bounds each reply (and each gap between image data packets). ``baudrate``, when
    the link has one, sizes the deadline of an image upload to the time it needs on the wire.
    Commands that change nothing on the device may be retried after a garbled reply; nothing is
    ever retried after a timeout, so a dead device costs one timeout, not several.
    """

    def __init__(
        self,
        transport: ByteTransport,
        *,
        address: int,
        timeout: float,
        baudrate: int | None = None,
        retries: int = 2,
    ) -> None:
        self._transport = transport
        self._address = address
        self._timeout = timeout
        self._baudrate = baudrate
        self._retries = retries
        self._parser = PacketParser(address=address)
        # Set when an exchange failed part way: stray bytes of it may still be on their way.
        self._line_dirty = True

    def verify_password(self, password: int) -> int:
        """VfyPwd; returns the confirmation code (0x00 accepted, 0x13 wrong password)."""
        return self.execute(Command.VFY_PWD, password.to_bytes(4, "big"), retry=True).code

    def read_system_parameters(self) -> SystemParameters:
        ack = self.execute(
            Command.READ_SYS_PARA, data_size=SystemParameters.ENCODED_SIZE, retry=True
        )
        self._require_ok(Command.READ_SYS_PARA, ack)
        return SystemParameters.decode(ack.data)

    def gen_img(self) -> int:
        """GenImg; returns the confirmation code (0x00 image taken, 0x02 no finger)."""
        return self.execute(Command.GEN_IMG, retry=True).code

    def aura_led(self, control: int, speed: int, colour: int, count: int) -> None:
        """R503 AuraLedConfig."""
        ack = self.execute(Command.AURA_LED_CONFIG, bytes((control, speed, colour, count)))
        self._require_ok(Command.AURA_LED_CONFIG, ack)

    def up_image(self, packet_size: int) -> bytes:
        """UpImage: the packed 4-bit image from the device's image buffer.

        Any fault in the data stream fails the whole upload (after letting the rest of the
        stream pass), because the image buffer cannot be re-read reliably: the caller recaptures.
        """
        ack = self.execute(Command.UP_IMAGE)
        self._require_ok(Command.UP_IMAGE, ack)
        start = time.monotonic()
        upload_deadline = (
            start
            + self._timeout
            + 2 * self._wire_time(IMAGE_BYTES + (IMAGE_BYTES // packet_size) * FRAME_OVERHEAD)
        )
        image = bytearray()
        index = 0
        try:
            while True:
                deadline = min(upload_deadline, time.monotonic() + self._timeout)
                packet = self._read_packet(deadline, f"image data packet {index}")
                if packet.pid not in (PacketId.DATA, PacketId.END_DATA):
                    raise SensorProtocolError(
                        f"image data packet {index}: unexpected packet id 0x{packet.pid:02X}"
                    )
                if len(packet.payload) != packet_size:
                    raise SensorProtocolError(
                        f"image data packet {index}: {len(packet.payload)} bytes, "
                        f"device packet size is {packet_size}"
                    )
                image += packet.payload
                if len(image) > IMAGE_BYTES:
                    raise SensorProtocolError(f"image data exceeds {IMAGE_BYTES} bytes")
                if packet.pid == PacketId.END_DATA:
                    break
                index += 1
        except (SensorProtocolError, SensorTimeoutError) as exc:
            if time.monotonic() >= upload_deadline:
                self._line_dirty = True
                raise SensorTimeoutError(
                    f"{self._transport.description}: image upload unfinished after "
                    f"{upload_deadline - start:.1f} s, {len(image)} of {IMAGE_BYTES} bytes received"
                ) from exc
            if isinstance(exc, SensorProtocolError):
                self._drain(upload_deadline)
            else:
                self._line_dirty = True
            raise
        if len(image) != IMAGE_BYTES:
            raise SensorProtocolError(f"image is {len(image)} bytes, expected {IMAGE_BYTES}")
        return bytes(image)

    def execute(
        self, command: int, params: bytes = b"", *, data_size: int = 0, retry: bool = False
    ) -> Ack:
        """Send one command and return its acknowledgement.

        ``data_size`` is how many bytes follow a 0x00 confirmation code; any other count is a
        protocol error. ``retry`` allows resending after a garbled reply.
        """
        name = command_name(command)
        attempts = 1 + (self._retries if retry else 0)
        for attempt in range(1, attempts + 1):
            if self._line_dirty:
                self._drain(time.monotonic() + self._timeout)
            deadline = time.monotonic() + self._timeout
            try:
                self._transport.write(
                    encode_packet(command_packet(self._address, command, params)), deadline
                )
                ack = self._read_ack(name, data_size, deadline)
            except SensorProtocolError as exc:
                self._line_dirty = True
                if attempt == attempts:
                    raise
                log.warning("%s: garbled reply (%s), retrying", name, exc)
                continue
            except SensorTimeoutError:
                self._line_dirty = True
                raise
            return ack
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _read_ack(self, name: str, data_size: int, deadline: float) -> Ack:
        packet = self._read_packet(deadline, f"reply to {name}")
        if packet.pid != PacketId.ACK:
            raise SensorProtocolError(
                f"reply to {name}: expected an acknowledgement, got packet id 0x{packet.pid:02X}"
            )
        ack = Ack(packet.payload[0], packet.payload[1:])
        # Failure replies of some firmware keep the full length, others drop the data bytes.
        sizes = {data_size} if ack.ok else {0, data_size}
        if len(ack.data) not in sizes:
            raise SensorProtocolError(
                f"reply to {name} with code {describe_confirmation(ack.code)} carries "
                f"{len(ack.data)} data bytes, expected {data_size}"
            )
        return ack

    def _read_packet(self, deadline: float, what: str) -> Packet:
        while True:
            try:
                packet = self._parser.next_packet()
            except SensorProtocolError as exc:
                raise SensorProtocolError(f"{what}: {exc}") from exc
            if packet is not None:
                return packet
            data = self._transport.read(_READ_CHUNK, deadline)
            if not data:
                if self._parser.pending:
                    # Part of a frame came and the rest never did: bytes were lost on the line.
                    raise SensorProtocolError(
                        f"{what}: truncated, {self._parser.pending} bytes of a frame arrived "
                        "and then nothing more"
                    )
                raise SensorTimeoutError(
                    f"{self._transport.description}: no {what} within {self._timeout:g} s"
                )
            self._parser.feed(data)

    def _drain(self, deadline: float) -> None:
        """Let the tail of a broken exchange arrive and throw it away."""
        self._transport.discard_input()
        self._parser.reset()
        while (now := time.monotonic()) < deadline:
            if not self._transport.read(_READ_CHUNK, min(deadline, now + _QUIET_PERIOD)):
                self._line_dirty = False
                return
        self._line_dirty = True

    def _wire_time(self, size: int) -> float:
        return 0.0 if self._baudrate is None else size * _BITS_PER_BYTE / self._baudrate

    @staticmethod
    def _require_ok(command: int, ack: Ack) -> None:
        if not ack.ok:
            raise SensorOperationError(
                f"{command_name(command)} failed: {describe_confirmation(ack.code)}", ack.code
            )
