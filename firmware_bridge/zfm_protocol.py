"""ZhianTec ZFM / R30x / AS608 packet format: framing, codes, system parameters, 4-bit images.

Pure functions and data only; no I/O. Both the host client and the simulator use it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from firmware_bridge.errors import SensorProtocolError

HEADER = b"\xef\x01"
BROADCAST_ADDRESS = 0xFFFFFFFF
# header (2) + address (4) + packet id (1) + length (2); the checksum (2) follows the payload.
FRAME_PREFIX_SIZE = 9
CHECKSUM_SIZE = 2
FRAME_OVERHEAD = FRAME_PREFIX_SIZE + CHECKSUM_SIZE
# The largest data packet a device can be configured for (packet size code 3).
MAX_PAYLOAD = 256

IMAGE_WIDTH = 256
IMAGE_HEIGHT = 288
IMAGE_BYTES = IMAGE_WIDTH * IMAGE_HEIGHT // 2

PACKET_SIZES = (32, 64, 128, 256)
BAUD_UNIT = 9600
SOFT_RESET_READY = 0x55


class PacketId(enum.IntEnum):
    COMMAND = 0x01
    DATA = 0x02
    ACK = 0x07
    END_DATA = 0x08


class Command(enum.IntEnum):
    GEN_IMG = 0x01
    IMG2TZ = 0x02
    MATCH = 0x03
    SEARCH = 0x04
    REG_MODEL = 0x05
    STORE = 0x06
    LOAD_CHAR = 0x07
    UP_CHAR = 0x08
    DOWN_CHAR = 0x09
    UP_IMAGE = 0x0A
    DOWN_IMAGE = 0x0B
    DELETE = 0x0C
    EMPTY = 0x0D
    SET_SYS_PARA = 0x0E
    READ_SYS_PARA = 0x0F
    SET_PWD = 0x12
    VFY_PWD = 0x13
    GET_RANDOM_CODE = 0x14
    SET_ADDR = 0x15
    TEMPLATE_NUM = 0x1D
    READ_INDEX_TABLE = 0x1F
    AURA_LED_CONFIG = 0x35  # R503 and later only
    SOFT_RESET = 0x3D


class Confirmation(enum.IntEnum):
    OK = 0x00
    RECEIVE_ERROR = 0x01
    NO_FINGER = 0x02
    IMAGE_FAILED = 0x03
    IMAGE_TOO_MESSY = 0x06
    TOO_FEW_FEATURES = 0x07
    NO_MATCH = 0x08
    NOT_FOUND = 0x09
    ENROLL_MISMATCH = 0x0A
    BAD_PAGE = 0x0B
    READ_ERROR = 0x0C
    UPLOAD_FAILED = 0x0D
    CANNOT_RECEIVE = 0x0E
    IMAGE_UPLOAD_FAILED = 0x0F
    DELETE_FAILED = 0x10
    CLEAR_FAILED = 0x11
    WRONG_PASSWORD = 0x13
    INVALID_IMAGE = 0x15
    FLASH_ERROR = 0x18
    INVALID_REGISTER = 0x1A
    WRONG_ADDRESS = 0x20
    PASSWORD_REQUIRED = 0x21


CONFIRMATION_MESSAGES: dict[int, str] = {
    0x00: "ok",
    0x01: "error receiving the packet",
    0x02: "no finger on the sensor",
    0x03: "failed to capture the finger image",
    0x06: "image too messy to extract features",
    0x07: "too few features in the image",
    0x08: "fingers do not match",
    0x09: "no matching finger found",
    0x0A: "failed to combine the feature files",
    0x0B: "page number out of range",
    0x0C: "error reading the template",
    0x0D: "error uploading the template",
    0x0E: "module cannot receive the following data packets",
    0x0F: "error uploading the image",
    0x10: "failed to delete the template",
    0x11: "failed to clear the library",
    0x13: "wrong password",
    0x15: "no valid image in the image buffer",
    0x18: "error writing flash",
    0x1A: "invalid register number",
    0x20: "wrong address",
    0x21: "password must be verified first",
}


def describe_confirmation(code: int) -> str:
    """Human text for a confirmation code, e.g. ``"0x02 (no finger on the sensor)"``."""
    return f"0x{code:02X} ({CONFIRMATION_MESSAGES.get(code, 'unknown confirmation code')})"


@dataclass(frozen=True)
class Packet:
    """One frame on the wire, without header, length and checksum."""

    address: int
    pid: int
    payload: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.address <= 0xFFFFFFFF:
            raise ValueError(f"address 0x{self.address:X} does not fit in 4 bytes")
        if not 0 <= self.pid <= 0xFF:
            raise ValueError(f"packet id {self.pid} does not fit in one byte")
        if not 1 <= len(self.payload) <= MAX_PAYLOAD:
            raise ValueError(f"payload of {len(self.payload)} bytes, must be 1..{MAX_PAYLOAD}")


def checksum(pid: int, length: int, payload: bytes) -> int:
    """16-bit sum of the packet id, both length bytes and the payload."""
    return (pid + (length >> 8) + (length & 0xFF) + sum(payload)) & 0xFFFF


def encode_packet(packet: Packet) -> bytes:
    length = len(packet.payload) + CHECKSUM_SIZE
    return b"".join(
        (
            HEADER,
            packet.address.to_bytes(4, "big"),
            bytes((packet.pid,)),
            length.to_bytes(2, "big"),
            packet.payload,
            checksum(packet.pid, length, packet.payload).to_bytes(2, "big"),
        )
    )


def command_packet(address: int, command: int, params: bytes = b"") -> Packet:
    return Packet(address, PacketId.COMMAND, bytes((command,)) + params)


def ack_packet(address: int, code: int, data: bytes = b"") -> Packet:
    return Packet(address, PacketId.ACK, bytes((code,)) + data)


class PacketParser:
    """Incremental frame parser: feed bytes as they arrive, take packets out.

    Bytes before a header are skipped (and counted in ``discarded``). A bad frame raises
    :class:`SensorProtocolError` from :meth:`next_packet` after the parser has already stepped one
    byte past the frame's header, so the next call resynchronises on the following ``EF 01``.
    ``address=None`` accepts frames for any address (a device checks the address itself).
    """

    def __init__(self, address: int | None = None, max_payload: int = MAX_PAYLOAD) -> None:
        if not 1 <= max_payload <= MAX_PAYLOAD:
            raise ValueError(f"max_payload must be 1..{MAX_PAYLOAD}")
        self._address = address
        self._max_payload = max_payload
        self._buffer = bytearray()
        self.discarded = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data
        self._skip_to_header()

    def reset(self) -> None:
        self.discarded += len(self._buffer)
        self._buffer.clear()

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""
        return len(self._buffer)

    def next_packet(self) -> Packet | None:
        """The next complete frame, None if more bytes are needed; raises on a bad frame."""
        buf = self._buffer
        if len(buf) < FRAME_PREFIX_SIZE:
            return None
        address = int.from_bytes(buf[2:6], "big")
        pid = buf[6]
        length = int.from_bytes(buf[7:9], "big")
        if pid not in _PACKET_IDS:
            self._drop_bad_frame()
            raise SensorProtocolError(f"unknown packet id 0x{pid:02X}")
        payload_size = length - CHECKSUM_SIZE
        if not 1 <= payload_size <= self._max_payload:
            self._drop_bad_frame()
            raise SensorProtocolError(
                f"packet length field {length} out of range 3..{self._max_payload + CHECKSUM_SIZE}"
            )
        end = FRAME_PREFIX_SIZE + length
        if len(buf) < end:
            return None
        payload = bytes(buf[FRAME_PREFIX_SIZE : end - CHECKSUM_SIZE])
        received = int.from_bytes(buf[end - CHECKSUM_SIZE : end], "big")
        expected = checksum(pid, length, payload)
        if received != expected:
            self._drop_bad_frame()
            raise SensorProtocolError(
                f"checksum mismatch in packet id 0x{pid:02X}: "
                f"received 0x{received:04X}, computed 0x{expected:04X}"
            )
        if self._address is not None and address != self._address:
            self._drop_bad_frame()
            raise SensorProtocolError(
                f"packet from address 0x{address:08X}, expected 0x{self._address:08X}"
            )
        del buf[:end]
        self._skip_to_header()
        return Packet(address, pid, payload)

    def _drop_bad_frame(self) -> None:
        # Step past this header only: a real frame may start inside the bytes we misread.
        del self._buffer[:1]
        self.discarded += 1
        self._skip_to_header()

    def _skip_to_header(self) -> None:
        buf = self._buffer
        start = buf.find(HEADER)
        if start == -1:
            # Keep a trailing 0xEF: it may be the first half of a header split across reads.
            keep = 1 if buf.endswith(HEADER[:1]) else 0
            start = len(buf) - keep
        if start:
            del buf[:start]
            self.discarded += start


_PACKET_IDS = frozenset(int(p) for p in PacketId)


@dataclass(frozen=True)
class SystemParameters:
    """The 16 bytes of a ReadSysPara reply."""

    status_register: int
    system_id: int
    library_size: int
    security_level: int
    address: int
    packet_size: int  # bytes per data packet (32, 64, 128 or 256)
    baud_multiplier: int  # baud rate = 9600 x this

    ENCODED_SIZE = 16

    @property
    def baudrate(self) -> int:
        return BAUD_UNIT * self.baud_multiplier

    @classmethod
    def decode(cls, data: bytes) -> SystemParameters:
        if len(data) != cls.ENCODED_SIZE:
            raise SensorProtocolError(
                f"system parameters are {len(data)} bytes, expected {cls.ENCODED_SIZE}"
            )
        size_code = int.from_bytes(data[12:14], "big")
        if size_code >= len(PACKET_SIZES):
            raise SensorProtocolError(f"system parameters: packet size code {size_code} not 0..3")
        return cls(
            status_register=int.from_bytes(data[0:2], "big"),
            system_id=int.from_bytes(data[2:4], "big"),
            library_size=int.from_bytes(data[4:6], "big"),
            security_level=int.from_bytes(data[6:8], "big"),
            address=int.from_bytes(data[8:12], "big"),
            packet_size=PACKET_SIZES[size_code],
            baud_multiplier=int.from_bytes(data[14:16], "big"),
        )

    def encode(self) -> bytes:
        return b"".join(
            (
                self.status_register.to_bytes(2, "big"),
                self.system_id.to_bytes(2, "big"),
                self.library_size.to_bytes(2, "big"),
                self.security_level.to_bytes(2, "big"),
                self.address.to_bytes(4, "big"),
                packet_size_code(self.packet_size).to_bytes(2, "big"),
                self.baud_multiplier.to_bytes(2, "big"),
            )
        )


def packet_size_code(packet_size: int) -> int:
    try:
        return PACKET_SIZES.index(packet_size)
    except ValueError:
        raise ValueError(f"packet size {packet_size} is not one of {PACKET_SIZES}") from None


def unpack_image(data: bytes) -> npt.NDArray[np.uint8]:
    """4-bit sensor image (left pixel in the high nibble) -> 288 x 256 grey, 0..15 -> 0..255."""
    if len(data) != IMAGE_BYTES:
        raise SensorProtocolError(f"image is {len(data)} bytes, expected {IMAGE_BYTES}")
    packed = np.frombuffer(data, dtype=np.uint8)
    pixels = np.empty(packed.size * 2, dtype=np.uint8)
    pixels[0::2] = packed >> 4
    pixels[1::2] = packed & 0x0F
    pixels *= 17
    return pixels.reshape(IMAGE_HEIGHT, IMAGE_WIDTH)


def pack_image(pixels: npt.NDArray[np.uint8]) -> bytes:
    """288 x 256 grey -> 4-bit sensor image, rounding each pixel to the nearest of 16 levels."""
    if pixels.shape != (IMAGE_HEIGHT, IMAGE_WIDTH) or pixels.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8 {IMAGE_HEIGHT}x{IMAGE_WIDTH}, got {pixels.dtype} {pixels.shape}"
        )
    levels = ((pixels.astype(np.uint16) + 8) // 17).astype(np.uint8).ravel()
    return bytes((levels[0::2] << 4) | levels[1::2])


def quantize_image(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """What a grey image looks like after a trip through the 4-bit sensor format."""
    return ((pixels.astype(np.uint16) + 8) // 17 * 17).astype(np.uint8)
