"""ISO/IEC 19794-2:2005 finger minutiae record: strict decoder and byte-exact encoder.

Layout (all integers big endian):
record header (24 bytes): ``FMR\\0``, `` 20\\0``, total length (4), capture equipment
compliance (4 bits) + id (12 bits), width (2), height (2), x/y resolution in pixels per cm
(2 + 2), number of finger views (1), reserved (1);
per view: finger position (1), view number (4 bits) + impression type (4 bits), finger quality
(1), minutiae count (1), minutiae (6 bytes each: type (2 bits) + x (14 bits), reserved (2 bits)
+ y (14 bits), angle (1, 256 units per turn, counter-clockwise), quality (1)), extended data
length (2), extended data blocks (type (2), length of the data that follows (2), data).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from edge.templates.binary import (
    ByteReader,
    check_range,
    read_minutia,
    read_record_geometry,
    read_view_header,
    write_view,
)
from edge.templates.errors import TemplateFormatError, TemplateValueError

MAGIC = b"FMR\x00"
VERSION = b" 20\x00"
HEADER_SIZE = 24
VIEW_HEADER_SIZE = 4
MINUTIA_SIZE = 6
EXTENDED_BLOCK_HEADER_SIZE = 4
IMPRESSION_TYPES = frozenset({0, 1, 2, 3, 8})


@dataclass(frozen=True)
class IsoMinutia:
    """One minutia as stored: integer pixels, angle in 1/256 turn, type code 0/1/2."""

    kind: int
    x: int
    y: int
    angle: int
    quality: int


@dataclass(frozen=True)
class ExtendedDataBlock:
    """An extended data block kept as raw bytes (1 ridge counts, 2 cores/deltas, 3 zonal)."""

    type_id: int
    data: bytes


@dataclass(frozen=True)
class FingerView:
    finger_position: int
    view_number: int
    impression_type: int
    finger_quality: int
    minutiae: tuple[IsoMinutia, ...] = ()
    extended_data: tuple[ExtendedDataBlock, ...] = ()


@dataclass(frozen=True)
class FingerMinutiaeRecord:
    width: int
    height: int
    x_resolution: int  # pixels per cm; 197 is 500 ppi
    y_resolution: int
    views: tuple[FingerView, ...] = field(default=())
    equipment_compliance: int = 0  # the top 4 bits; bit 3 (0x8) is Appendix F certification
    equipment_id: int = 0


def decode(data: bytes) -> FingerMinutiaeRecord:
    """Parse a complete record; anything malformed raises :class:`TemplateFormatError`."""
    r = ByteReader(bytes(data))
    if r.take(4, "magic") != MAGIC:
        raise r.fail("magic", "not a finger minutiae record (expected 'FMR\\0')", 4)
    if r.take(4, "version") != VERSION:
        raise r.fail("version", "not the 2005 edition (expected ' 20\\0')", 4)
    total = r.u32("record length")
    if total != len(data):
        raise r.fail("record length", f"says {total} bytes, record has {len(data)}", 4)
    equipment, width, height, x_resolution, y_resolution, view_count = read_record_geometry(r)
    views = tuple(_decode_view(r, width, height) for _ in range(view_count))
    if r.offset != len(data):
        raise TemplateFormatError(r.offset, "record", f"{len(data) - r.offset} trailing bytes")
    return FingerMinutiaeRecord(
        width=width,
        height=height,
        x_resolution=x_resolution,
        y_resolution=y_resolution,
        views=views,
        equipment_compliance=equipment >> 12,
        equipment_id=equipment & 0x0FFF,
    )


def _decode_view(r: ByteReader, width: int, height: int) -> FingerView:
    position, view_number, impression, quality, count = read_view_header(r, IMPRESSION_TYPES)
    minutiae = tuple(
        IsoMinutia(*read_minutia(r, width, height, max_angle=0xFF)) for _ in range(count)
    )
    return FingerView(
        finger_position=position,
        view_number=view_number,
        impression_type=impression,
        finger_quality=quality,
        minutiae=minutiae,
        extended_data=_decode_extended(r),
    )


def _decode_extended(r: ByteReader) -> tuple[ExtendedDataBlock, ...]:
    length = r.u16("extended data length")
    end = r.offset + length
    if end > r.end:
        raise r.fail("extended data length", f"{length} bytes run past the record", 2)
    blocks: list[ExtendedDataBlock] = []
    while r.offset < end:
        if end - r.offset < EXTENDED_BLOCK_HEADER_SIZE:
            raise TemplateFormatError(r.offset, "extended data block", "header cut short")
        type_id = r.u16("extended data type")
        if type_id == 0:
            raise r.fail("extended data type", "type 0 is not assigned", 2)
        size = r.u16("extended data block length")
        if r.offset + size > end:
            raise r.fail("extended data block length", f"{size} bytes run past the area", 2)
        blocks.append(ExtendedDataBlock(type_id=type_id, data=r.take(size, "extended data")))
    return tuple(blocks)


def encode(record: FingerMinutiaeRecord) -> bytes:
    """Serialise a record; out-of-range fields raise :class:`TemplateValueError`."""
    check_range(record.equipment_compliance, 0x0F, "equipment compliance")
    check_range(record.equipment_id, 0x0FFF, "equipment id")
    for name in ("width", "height", "x_resolution", "y_resolution"):
        check_range(getattr(record, name), 0xFFFF, name)
    if not 1 <= len(record.views) <= 0xFF:
        raise TemplateValueError(f"number of finger views {len(record.views)} is not 1..255")
    body = b"".join(_encode_view(v, record.width, record.height) for v in record.views)
    total = HEADER_SIZE + len(body)
    check_range(total, 0xFFFFFFFF, "record length")
    header = (
        MAGIC
        + VERSION
        + struct.pack(
            ">IHHHHHBB",
            total,
            record.equipment_compliance << 12 | record.equipment_id,
            record.width,
            record.height,
            record.x_resolution,
            record.y_resolution,
            len(record.views),
            0,
        )
    )
    return header + body


def _encode_view(view: FingerView, width: int, height: int) -> bytes:
    parts = [write_view(view, width, height, IMPRESSION_TYPES, max_angle=0xFF)]
    extended = b""
    for block in view.extended_data:
        check_range(block.type_id, 0xFFFF, "extended data type")
        if block.type_id == 0:
            raise TemplateValueError("extended data type 0 is not assigned")
        check_range(len(block.data), 0xFFFF, "extended data block length")
        extended += struct.pack(">HH", block.type_id, len(block.data)) + block.data
    check_range(len(extended), 0xFFFF, "extended data length")
    parts.append(struct.pack(">H", len(extended)) + extended)
    return b"".join(parts)
