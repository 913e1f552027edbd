"""ANSI INCITS 378-2004 finger minutiae record: strict decoder and byte-exact encoder.

Layout (all integers big endian): ``FMR\\0``, `` 20\\0`` (the same magic as ISO/IEC 19794-2:2005),
record length (2 bytes; 0 means a 4-byte length follows, used only when the record is longer
than 65,535 bytes), CBEFF product identifier (owner 2, type 2), capture equipment compliance
(4 bits) + id (12 bits), width, height, x/y resolution in pixels per cm (2 each), number of
finger views (1), reserved (1); per view: finger position (1), view number (4 bits) +
impression type (4 bits), finger quality (1), minutiae count (1), minutiae (6 bytes: type
(2 bits) + x (14 bits), reserved (2 bits) + y (14 bits), angle in 2-degree units 0..179,
quality 0..100), extended data length (2), blocks (type (2), length *including* this 4-byte
header (2), data).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from edge.templates.binary import (
    ByteReader,
    check_range,
    read_minutia,
    read_record_geometry,
    read_view_header,
    write_view,
)
from edge.templates.errors import TemplateFormatError
from edge.templates.iso19794_2_2005 import ExtendedDataBlock

MAGIC = b"FMR\x00 20\x00"
HEADER_SIZE = 26
LONG_HEADER_SIZE = 30
MAX_SHORT_LENGTH = 0xFFFF
MAX_ANGLE = 179
IMPRESSION_TYPES = frozenset({0, 1, 2, 3, 8, 9})  # 9: live-scan contactless
EXTENDED_BLOCK_HEADER_SIZE = 4


@dataclass(frozen=True)
class AnsiMinutia:
    """One minutia as stored: integer pixels, angle in 2-degree units (0..179)."""

    kind: int
    x: int
    y: int
    angle: int
    quality: int


@dataclass(frozen=True)
class AnsiFingerView:
    finger_position: int
    view_number: int
    impression_type: int
    finger_quality: int
    minutiae: tuple[AnsiMinutia, ...] = ()
    extended_data: tuple[ExtendedDataBlock, ...] = ()


@dataclass(frozen=True)
class AnsiMinutiaeRecord:
    width: int
    height: int
    x_resolution: int  # pixels per cm
    y_resolution: int
    views: tuple[AnsiFingerView, ...] = ()
    product_owner: int = 0  # CBEFF product identifier
    product_type: int = 0
    equipment_compliance: int = 0
    equipment_id: int = 0


def record_length(data: bytes) -> int | None:
    """The length the header claims, or None if there are too few bytes to say."""
    if len(data) < 10:
        return None
    short: int = struct.unpack(">H", data[8:10])[0]
    if short:
        return short
    if len(data) < 14:
        return None
    long: int = struct.unpack(">I", data[10:14])[0]
    return long


def decode(data: bytes) -> AnsiMinutiaeRecord:
    """Parse a complete record; anything malformed raises :class:`TemplateFormatError`."""
    data = bytes(data)
    r = ByteReader(data)
    if r.take(8, "magic") != MAGIC:
        raise r.fail("magic", "not an ANSI 378-2004 record (expected 'FMR\\0 20\\0')", 8)
    total = r.u16("record length")
    if total == 0:
        total = r.u32("extended record length")
        if total <= MAX_SHORT_LENGTH:
            raise r.fail("extended record length", f"{total} fits the 2-byte field", 4)
    elif total < HEADER_SIZE:
        raise r.fail("record length", f"{total} is shorter than the {HEADER_SIZE}-byte header", 2)
    if total != len(data):
        raise TemplateFormatError(8, "record length", f"says {total} bytes, record has {len(data)}")
    owner = r.u16("CBEFF product owner")
    product_type = r.u16("CBEFF product type")
    equipment, width, height, x_resolution, y_resolution, view_count = read_record_geometry(r)
    views = tuple(_decode_view(r, width, height) for _ in range(view_count))
    if r.remaining:
        raise TemplateFormatError(r.offset, "record", f"{r.remaining} trailing bytes")
    return AnsiMinutiaeRecord(
        width=width,
        height=height,
        x_resolution=x_resolution,
        y_resolution=y_resolution,
        views=views,
        product_owner=owner,
        product_type=product_type,
        equipment_compliance=equipment >> 12,
        equipment_id=equipment & 0x0FFF,
    )


def _decode_view(r: ByteReader, width: int, height: int) -> AnsiFingerView:
    position, view_number, impression, quality, count = read_view_header(r, IMPRESSION_TYPES)
    minutiae = tuple(
        AnsiMinutia(*read_minutia(r, width, height, max_angle=MAX_ANGLE)) for _ in range(count)
    )
    return AnsiFingerView(
        finger_position=position,
        view_number=view_number,
        impression_type=impression,
        finger_quality=quality,
        minutiae=minutiae,
        extended_data=decode_inclusive_blocks(r),
    )


def decode_inclusive_blocks(r: ByteReader) -> tuple[ExtendedDataBlock, ...]:
    """Extended data whose block lengths count the 4-byte block header (ANSI 378, ISO 2011)."""
    length = r.u16("extended data length")
    if length > r.remaining:
        raise r.fail("extended data length", f"{length} bytes run past the record", 2)
    end = r.offset + length
    blocks: list[ExtendedDataBlock] = []
    while r.offset < end:
        if end - r.offset < EXTENDED_BLOCK_HEADER_SIZE:
            raise TemplateFormatError(r.offset, "extended data block", "header cut short")
        type_id = r.u16("extended data type")
        if type_id == 0:
            raise r.fail("extended data type", "type 0 is not assigned", 2)
        size = r.u16("extended data block length")
        if size < EXTENDED_BLOCK_HEADER_SIZE:
            raise r.fail("extended data block length", f"{size} is less than its own header", 2)
        if r.offset - EXTENDED_BLOCK_HEADER_SIZE + size > end:
            raise r.fail("extended data block length", f"{size} bytes run past the area", 2)
        data = r.take(size - EXTENDED_BLOCK_HEADER_SIZE, "extended data")
        blocks.append(ExtendedDataBlock(type_id=type_id, data=data))
    return tuple(blocks)


def encode_inclusive_blocks(blocks: tuple[ExtendedDataBlock, ...]) -> bytes:
    parts = []
    for block in blocks:
        check_range(block.type_id, 0xFFFF, "extended data type", minimum=1)
        size = len(block.data) + EXTENDED_BLOCK_HEADER_SIZE
        check_range(size, 0xFFFF, "extended data block length")
        parts.append(struct.pack(">HH", block.type_id, size) + block.data)
    area = b"".join(parts)
    check_range(len(area), 0xFFFF, "extended data length")
    return struct.pack(">H", len(area)) + area


def encode(record: AnsiMinutiaeRecord) -> bytes:
    """Serialise a record; out-of-range fields raise :class:`TemplateValueError`."""
    check_range(record.product_owner, 0xFFFF, "CBEFF product owner")
    check_range(record.product_type, 0xFFFF, "CBEFF product type")
    check_range(record.equipment_compliance, 0x0F, "equipment compliance")
    check_range(record.equipment_id, 0x0FFF, "equipment id")
    for name in ("width", "height", "x_resolution", "y_resolution"):
        check_range(getattr(record, name), 0xFFFF, name)
    check_range(len(record.views), 0xFF, "number of finger views", minimum=1)
    body = b"".join(_encode_view(v, record.width, record.height) for v in record.views)
    total = HEADER_SIZE + len(body)
    if total <= MAX_SHORT_LENGTH:
        length = struct.pack(">H", total)
    else:
        total += LONG_HEADER_SIZE - HEADER_SIZE
        check_range(total, 0xFFFFFFFF, "record length")
        length = struct.pack(">HI", 0, total)
    fields = struct.pack(
        ">HHHHHHHBB",
        record.product_owner,
        record.product_type,
        record.equipment_compliance << 12 | record.equipment_id,
        record.width,
        record.height,
        record.x_resolution,
        record.y_resolution,
        len(record.views),
        0,
    )
    return MAGIC + length + fields + body


def _encode_view(view: AnsiFingerView, width: int, height: int) -> bytes:
    header = write_view(view, width, height, IMPRESSION_TYPES, max_angle=MAX_ANGLE)
    return header + encode_inclusive_blocks(view.extended_data)
