"""Big-endian cursor and range checks shared by the binary template codecs."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Protocol

from edge.templates.errors import TemplateFormatError, TemplateValueError


class ByteReader:
    """Reads ``data[offset:end]``; every failure names the absolute offset and the field."""

    def __init__(self, data: bytes, offset: int = 0, end: int | None = None) -> None:
        self.data = data
        self.offset = offset
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.offset

    def take(self, size: int, name: str) -> bytes:
        if size > self.remaining:
            raise TemplateFormatError(
                self.offset, name, f"truncated: need {size} bytes, {self.remaining} left"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def u8(self, name: str) -> int:
        return self.take(1, name)[0]

    def u16(self, name: str) -> int:
        value: int = struct.unpack(">H", self.take(2, name))[0]
        return value

    def u32(self, name: str) -> int:
        value: int = struct.unpack(">I", self.take(4, name))[0]
        return value

    def fail(self, name: str, message: str, size: int) -> TemplateFormatError:
        """Error for the field of ``size`` bytes just read."""
        return TemplateFormatError(self.offset - size, name, message)


MAX_COORDINATE = 0x3FFF  # 14-bit minutia coordinates
MAX_QUALITY = 100
MAX_FINGER_POSITION = 10
MINUTIA_TYPES = frozenset({0, 1, 2})  # other, ridge ending, bifurcation; 3 is reserved


def read_record_geometry(r: ByteReader) -> tuple[int, int, int, int, int, int]:
    """Equipment word, width, height, x/y resolution and view count, then the reserved byte.

    The tail of the record header is laid out alike in ISO/IEC 19794-2:2005 and ANSI 378.
    """
    equipment = r.u16("capture equipment")
    width = r.u16("width")
    height = r.u16("height")
    x_resolution = r.u16("x resolution")
    y_resolution = r.u16("y resolution")
    view_count = r.u8("number of finger views")
    if view_count == 0:
        raise r.fail("number of finger views", "a record holds at least one view", 1)
    if r.u8("reserved") != 0:
        raise r.fail("reserved", "must be zero", 1)
    return equipment, width, height, x_resolution, y_resolution, view_count


def read_view_header(
    r: ByteReader, impression_types: frozenset[int]
) -> tuple[int, int, int, int, int]:
    """Finger position, view number, impression type, finger quality, minutiae count.

    The 4-byte view header is laid out alike in ISO/IEC 19794-2:2005 and ANSI INCITS 378-2004.
    """
    position = r.u8("finger position")
    if position > MAX_FINGER_POSITION:
        raise r.fail("finger position", f"{position} is not 0..{MAX_FINGER_POSITION}", 1)
    packed = r.u8("view number/impression type")
    impression = packed & 0x0F
    if impression not in impression_types:
        raise r.fail("impression type", f"{impression} is not one of {sorted(impression_types)}", 1)
    quality = r.u8("finger quality")
    if quality > MAX_QUALITY:
        raise r.fail("finger quality", f"{quality} is over {MAX_QUALITY}", 1)
    count = r.u8("number of minutiae")
    return position, packed >> 4, impression, quality, count


def read_minutia(
    r: ByteReader, width: int, height: int, max_angle: int
) -> tuple[int, int, int, int, int]:
    """Type, x, y, angle, quality of one 6-byte minutia (ISO 2005 / ANSI 378 layout)."""
    start = r.offset
    type_x = r.u16("minutia type/x")
    reserved_y = r.u16("minutia y")
    angle = r.u8("minutia angle")
    quality = r.u8("minutia quality")
    kind, x, y = type_x >> 14, type_x & MAX_COORDINATE, reserved_y & MAX_COORDINATE
    if kind not in MINUTIA_TYPES:
        raise TemplateFormatError(start, "minutia type", "type bits 11 are reserved")
    if reserved_y >> 14:
        raise TemplateFormatError(start + 2, "minutia y", "reserved bits 15..14 must be zero")
    if x >= width or y >= height:
        raise TemplateFormatError(start, "minutia x/y", f"({x}, {y}) is outside {width}x{height}")
    if angle > max_angle:
        raise TemplateFormatError(start + 4, "minutia angle", f"{angle} is over {max_angle}")
    if quality > MAX_QUALITY:
        raise TemplateFormatError(start + 5, "minutia quality", f"{quality} is over {MAX_QUALITY}")
    return kind, x, y, angle, quality


class StoredView(Protocol):
    """The view fields ISO/IEC 19794-2:2005 and ANSI INCITS 378-2004 store alike."""

    @property
    def finger_position(self) -> int: ...
    @property
    def view_number(self) -> int: ...
    @property
    def impression_type(self) -> int: ...
    @property
    def finger_quality(self) -> int: ...
    @property
    def minutiae(self) -> Sequence[StoredMinutia]: ...


class StoredMinutia(Protocol):
    @property
    def kind(self) -> int: ...
    @property
    def x(self) -> int: ...
    @property
    def y(self) -> int: ...
    @property
    def angle(self) -> int: ...
    @property
    def quality(self) -> int: ...


def write_view(
    view: StoredView, width: int, height: int, impression_types: frozenset[int], max_angle: int
) -> bytes:
    """View header and minutiae (no extended data), checking every field before writing it."""
    check_range(view.finger_position, MAX_FINGER_POSITION, "finger position")
    check_range(view.view_number, 0x0F, "view number")
    if view.impression_type not in impression_types:
        raise TemplateValueError(f"impression type {view.impression_type} is not allowed")
    check_range(view.finger_quality, MAX_QUALITY, "finger quality")
    check_range(len(view.minutiae), 0xFF, "number of minutiae")
    parts = [
        struct.pack(
            ">BBBB",
            view.finger_position,
            view.view_number << 4 | view.impression_type,
            view.finger_quality,
            len(view.minutiae),
        )
    ]
    for m in view.minutiae:
        if m.kind not in MINUTIA_TYPES:
            raise TemplateValueError(f"minutia type {m.kind} is not 0, 1 or 2")
        # Coordinates have 14 bits: a wider image cannot put a minutia past 16383.
        check_range(m.x, min(width - 1, MAX_COORDINATE), "minutia x")
        check_range(m.y, min(height - 1, MAX_COORDINATE), "minutia y")
        check_range(m.angle, max_angle, "minutia angle")
        check_range(m.quality, MAX_QUALITY, "minutia quality")
        parts.append(struct.pack(">HHBB", m.kind << 14 | m.x, m.y, m.angle, m.quality))
    return b"".join(parts)


def check_range(value: int, maximum: int, name: str, minimum: int = 0) -> None:
    """Refuse to encode a field outside ``minimum..maximum``."""
    if not minimum <= value <= maximum:
        raise TemplateValueError(f"{name} {value} is not {minimum}..{maximum}")
