"""ISO/IEC 19794-2:2011 finger minutiae record: strict decoder and byte-exact encoder.

Layout (all integers big endian), general header (15 bytes): ``FMR\\0``, ``030\\0``, total
length (4), number of finger representations (2), certification flag (1: 0 or 1).
Per representation: its own length (4, counting these 4 bytes), capture date-time (9: year (2),
month, day, hour, minute, second (1 each), millisecond (2); all-ones means "not given"),
capture device technology (1, 0..20), device vendor id (2), device type id (2), number of
quality records (1) and 5 bytes each (score 0..100 or 255 failed, algorithm vendor (2),
algorithm id (2)), when the certification flag is set a number of certification records (1)
and 3 bytes each (authority (2), scheme (1)); then finger position (1), view number (1, 0..15),
x/y resolution in pixels per cm (2 + 2), impression type (1), image width and height (2 + 2),
minutia field length (4 bits, 5 or 6) + ridge-ending type (4 bits, 0 valley-skeleton
bifurcation, 1 ridge-skeleton end point), minutiae count (1), minutiae (type (2 bits) + x (14
bits), reserved (2 bits) + y (14 bits), angle in 1/256 turn (1), and quality when the field
length is 6: 0..100, 254 not reported, 255 failed), extended data length (2), blocks (type
(2), length *including* the 4-byte block header (2), data).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from edge.templates.ansi378_2004 import decode_inclusive_blocks, encode_inclusive_blocks
from edge.templates.binary import ByteReader, check_range
from edge.templates.errors import TemplateFormatError, TemplateValueError
from edge.templates.iso19794_2_2005 import ExtendedDataBlock, IsoMinutia

MAGIC = b"FMR\x00030\x00"
HEADER_SIZE = 15
MAX_COORDINATE = 0x3FFF
MAX_FINGER_POSITION = 10
MAX_DEVICE_TECHNOLOGY = 20
IMPRESSION_TYPES = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 24, 28, 29})
MINUTIA_TYPES = frozenset({0, 1, 2})
QUALITY_NOT_REPORTED = 254
QUALITY_FAILED = 255
MINUTIA_SIZES = frozenset({5, 6})
ENDING_VALLEY_BIFURCATION = 0  # the ISO 2005 convention
ENDING_RIDGE_END = 1  # the ANSI 378 convention
# Length, date-time, technology, vendor, device, quality count: the least a representation has
# before its finger fields (14 + 5 bytes) and the 16 bytes of finger fields after them.
_REPRESENTATION_FIXED = 4 + 9 + 1 + 2 + 2 + 1
_FINGER_FIXED = 1 + 1 + 2 + 2 + 1 + 2 + 2 + 1 + 1 + 2


@dataclass(frozen=True)
class CaptureDateTime:
    """UTC capture time; a field of all ones (0xFF / 0xFFFF) is "not given"."""

    year: int = 0xFFFF
    month: int = 0xFF
    day: int = 0xFF
    hour: int = 0xFF
    minute: int = 0xFF
    second: int = 0xFF
    millisecond: int = 0xFFFF


@dataclass(frozen=True)
class QualityRecord:
    score: int  # 0..100, or 255 when the algorithm failed
    algorithm_vendor: int = 0
    algorithm_id: int = 0


@dataclass(frozen=True)
class CertificationRecord:
    authority: int
    scheme: int


@dataclass(frozen=True)
class Representation:
    """One finger view with its own capture metadata, image size and resolution."""

    finger_position: int
    width: int
    height: int
    x_resolution: int  # pixels per cm
    y_resolution: int
    impression_type: int = 0
    view_number: int = 0
    minutiae: tuple[IsoMinutia, ...] = ()  # quality 0..100, 254 or 255
    extended_data: tuple[ExtendedDataBlock, ...] = ()
    capture_datetime: CaptureDateTime = CaptureDateTime()
    device_technology: int = 0
    device_vendor: int = 0
    device_id: int = 0
    quality_records: tuple[QualityRecord, ...] = ()
    certifications: tuple[CertificationRecord, ...] = ()
    minutia_size: int = 6  # 5: minutiae carry no quality byte (all read as 254)
    ending_type: int = ENDING_VALLEY_BIFURCATION


@dataclass(frozen=True)
class Iso2011Record:
    representations: tuple[Representation, ...]
    certification_flag: bool = False  # representations carry certification record lists


def decode(data: bytes) -> Iso2011Record:
    """Parse a complete record; anything malformed raises :class:`TemplateFormatError`."""
    data = bytes(data)
    r = ByteReader(data)
    if r.take(4, "magic") != MAGIC[:4]:
        raise r.fail("magic", "not a finger minutiae record (expected 'FMR\\0')", 4)
    if r.take(4, "version") != MAGIC[4:]:
        raise r.fail("version", "not the 2011 edition (expected '030\\0')", 4)
    total = r.u32("record length")
    if total != len(data):
        raise r.fail("record length", f"says {total} bytes, record has {len(data)}", 4)
    count = r.u16("number of representations")
    if count == 0:
        raise r.fail("number of representations", "a record holds at least one", 2)
    flag = r.u8("certification flag")
    if flag > 1:
        raise r.fail("certification flag", f"{flag} is not 0 or 1", 1)
    representations = tuple(_decode_representation(r, bool(flag)) for _ in range(count))
    if r.remaining:
        raise TemplateFormatError(r.offset, "record", f"{r.remaining} trailing bytes")
    return Iso2011Record(representations=representations, certification_flag=bool(flag))


def _decode_representation(r: ByteReader, certified: bool) -> Representation:
    start = r.offset
    length = r.u32("representation length")
    minimum = _REPRESENTATION_FIXED + _FINGER_FIXED + (1 if certified else 0)
    if length < minimum:
        raise r.fail("representation length", f"{length} is under the minimum {minimum}", 4)
    if start + length > r.end:
        raise r.fail("representation length", f"{length} bytes run past the record", 4)
    rep = ByteReader(r.data, r.offset, start + length)
    when = _decode_datetime(rep)
    technology = rep.u8("capture device technology")
    if technology > MAX_DEVICE_TECHNOLOGY:
        raise rep.fail("capture device technology", f"{technology} is not 0..20", 1)
    vendor = rep.u16("capture device vendor")
    device = rep.u16("capture device type")
    qualities = tuple(_decode_quality(rep) for _ in range(rep.u8("number of quality records")))
    certifications: tuple[CertificationRecord, ...] = ()
    if certified:
        count = rep.u8("number of certification records")
        certifications = tuple(
            CertificationRecord(rep.u16("certification authority"), rep.u8("certification scheme"))
            for _ in range(count)
        )
    position = rep.u8("finger position")
    if position > MAX_FINGER_POSITION:
        raise rep.fail("finger position", f"{position} is not 0..{MAX_FINGER_POSITION}", 1)
    view_number = rep.u8("view number")
    if view_number > 0x0F:
        raise rep.fail("view number", f"{view_number} is not 0..15", 1)
    x_resolution = rep.u16("x resolution")
    y_resolution = rep.u16("y resolution")
    impression = rep.u8("impression type")
    if impression not in IMPRESSION_TYPES:
        raise rep.fail(
            "impression type", f"{impression} is not one of {sorted(IMPRESSION_TYPES)}", 1
        )
    width = rep.u16("width")
    height = rep.u16("height")
    packed = rep.u8("minutia field length/ridge ending type")
    size, ending = packed >> 4, packed & 0x0F
    if size not in MINUTIA_SIZES:
        raise rep.fail("minutia field length", f"{size} is not 5 or 6", 1)
    if ending > ENDING_RIDGE_END:
        raise rep.fail("ridge ending type", f"{ending} is not 0 or 1", 1)
    count = rep.u8("number of minutiae")
    minutiae = tuple(_decode_minutia(rep, width, height, size) for _ in range(count))
    blocks = decode_inclusive_blocks(rep)
    if rep.remaining:
        raise TemplateFormatError(
            rep.offset, "representation length", f"{rep.remaining} bytes left after the data"
        )
    r.offset = rep.offset
    return Representation(
        finger_position=position,
        width=width,
        height=height,
        x_resolution=x_resolution,
        y_resolution=y_resolution,
        impression_type=impression,
        view_number=view_number,
        minutiae=minutiae,
        extended_data=blocks,
        capture_datetime=when,
        device_technology=technology,
        device_vendor=vendor,
        device_id=device,
        quality_records=qualities,
        certifications=certifications,
        minutia_size=size,
        ending_type=ending,
    )


_DATETIME_LIMITS = (
    ("year", 2, 1, 0xFFFE),
    ("month", 1, 1, 12),
    ("day", 1, 1, 31),
    ("hour", 1, 0, 23),
    ("minute", 1, 0, 59),
    ("second", 1, 0, 59),
    ("millisecond", 2, 0, 999),
)


def _decode_datetime(r: ByteReader) -> CaptureDateTime:
    values: dict[str, int] = {}
    absent_before = False
    for name, size, low, high in _DATETIME_LIMITS:
        field = f"capture {name}"
        value = r.u16(field) if size == 2 else r.u8(field)
        absent = value == (0xFFFF if size == 2 else 0xFF)
        if not absent and not low <= value <= high:
            raise r.fail(field, f"{value} is not {low}..{high} or all ones", size)
        if absent_before and not absent:
            raise r.fail(field, "given although a larger unit is not", size)
        absent_before = absent_before or absent
        values[name] = value
    return CaptureDateTime(**values)


def _decode_quality(r: ByteReader) -> QualityRecord:
    score = r.u8("quality score")
    if score > 100 and score != QUALITY_FAILED:
        raise r.fail("quality score", f"{score} is not 0..100 or 255", 1)
    return QualityRecord(score, r.u16("quality algorithm vendor"), r.u16("quality algorithm"))


def _decode_minutia(r: ByteReader, width: int, height: int, size: int) -> IsoMinutia:
    start = r.offset
    type_x = r.u16("minutia type/x")
    reserved_y = r.u16("minutia y")
    angle = r.u8("minutia angle")
    quality = r.u8("minutia quality") if size == 6 else QUALITY_NOT_REPORTED
    kind, x, y = type_x >> 14, type_x & MAX_COORDINATE, reserved_y & MAX_COORDINATE
    if kind not in MINUTIA_TYPES:
        raise TemplateFormatError(start, "minutia type", "type bits 11 are reserved")
    if reserved_y >> 14:
        raise TemplateFormatError(start + 2, "minutia y", "reserved bits 15..14 must be zero")
    if x >= width or y >= height:
        raise TemplateFormatError(start, "minutia x/y", f"({x}, {y}) is outside {width}x{height}")
    if not _valid_minutia_quality(quality):
        raise TemplateFormatError(start + 5, "minutia quality", f"{quality} is not 0..100/254/255")
    return IsoMinutia(kind=kind, x=x, y=y, angle=angle, quality=quality)


def _valid_minutia_quality(quality: int) -> bool:
    return 0 <= quality <= 100 or quality in (QUALITY_NOT_REPORTED, QUALITY_FAILED)


def encode(record: Iso2011Record) -> bytes:
    """Serialise a record; out-of-range fields raise :class:`TemplateValueError`."""
    check_range(len(record.representations), 0xFFFF, "number of representations", minimum=1)
    body = b"".join(
        _encode_representation(p, record.certification_flag) for p in record.representations
    )
    total = HEADER_SIZE + len(body)
    check_range(total, 0xFFFFFFFF, "record length")
    header = MAGIC + struct.pack(
        ">IHB", total, len(record.representations), int(record.certification_flag)
    )
    return header + body


def _encode_representation(rep: Representation, certified: bool) -> bytes:
    check_range(rep.device_technology, MAX_DEVICE_TECHNOLOGY, "capture device technology")
    check_range(rep.device_vendor, 0xFFFF, "capture device vendor")
    check_range(rep.device_id, 0xFFFF, "capture device type")
    check_range(rep.finger_position, MAX_FINGER_POSITION, "finger position")
    check_range(rep.view_number, 0x0F, "view number")
    for name in ("width", "height", "x_resolution", "y_resolution"):
        check_range(getattr(rep, name), 0xFFFF, name)
    if rep.impression_type not in IMPRESSION_TYPES:
        raise TemplateValueError(f"impression type {rep.impression_type} is not allowed")
    if rep.minutia_size not in MINUTIA_SIZES:
        raise TemplateValueError(f"minutia field length {rep.minutia_size} is not 5 or 6")
    check_range(rep.ending_type, ENDING_RIDGE_END, "ridge ending type")
    if rep.certifications and not certified:
        raise TemplateValueError("certification records need the record's certification flag")
    check_range(len(rep.quality_records), 0xFF, "number of quality records")
    check_range(len(rep.certifications), 0xFF, "number of certification records")
    check_range(len(rep.minutiae), 0xFF, "number of minutiae")
    parts = [_encode_datetime(rep.capture_datetime)]
    parts.append(
        struct.pack(
            ">BHHB",
            rep.device_technology,
            rep.device_vendor,
            rep.device_id,
            len(rep.quality_records),
        )
    )
    for q in rep.quality_records:
        if not (0 <= q.score <= 100 or q.score == QUALITY_FAILED):
            raise TemplateValueError(f"quality score {q.score} is not 0..100 or 255")
        check_range(q.algorithm_vendor, 0xFFFF, "quality algorithm vendor")
        check_range(q.algorithm_id, 0xFFFF, "quality algorithm")
        parts.append(struct.pack(">BHH", q.score, q.algorithm_vendor, q.algorithm_id))
    if certified:
        parts.append(struct.pack(">B", len(rep.certifications)))
        for c in rep.certifications:
            check_range(c.authority, 0xFFFF, "certification authority")
            check_range(c.scheme, 0xFF, "certification scheme")
            parts.append(struct.pack(">HB", c.authority, c.scheme))
    parts.append(
        struct.pack(
            ">BBHHBHHBB",
            rep.finger_position,
            rep.view_number,
            rep.x_resolution,
            rep.y_resolution,
            rep.impression_type,
            rep.width,
            rep.height,
            rep.minutia_size << 4 | rep.ending_type,
            len(rep.minutiae),
        )
    )
    for m in rep.minutiae:
        if m.kind not in MINUTIA_TYPES:
            raise TemplateValueError(f"minutia type {m.kind} is not 0, 1 or 2")
        check_range(m.x, min(rep.width - 1, MAX_COORDINATE), "minutia x")
        check_range(m.y, min(rep.height - 1, MAX_COORDINATE), "minutia y")
        check_range(m.angle, 0xFF, "minutia angle")
        if not _valid_minutia_quality(m.quality):
            raise TemplateValueError(f"minutia quality {m.quality} is not 0..100, 254 or 255")
        packed = struct.pack(">HHB", m.kind << 14 | m.x, m.y, m.angle)
        if rep.minutia_size == 6:
            packed += bytes([m.quality])
        elif m.quality != QUALITY_NOT_REPORTED:
            raise TemplateValueError("5-byte minutiae cannot carry a quality (use 254)")
        parts.append(packed)
    parts.append(encode_inclusive_blocks(rep.extended_data))
    body = b"".join(parts)
    length = 4 + len(body)
    check_range(length, 0xFFFFFFFF, "representation length")
    return struct.pack(">I", length) + body


def _encode_datetime(when: CaptureDateTime) -> bytes:
    absent_before = False
    for name, size, low, high in _DATETIME_LIMITS:
        value = getattr(when, name)
        absent = value == (0xFFFF if size == 2 else 0xFF)
        if not absent and not low <= value <= high:
            raise TemplateValueError(f"capture {name} {value} is not {low}..{high} or all ones")
        if absent_before and not absent:
            raise TemplateValueError(f"capture {name} given although a larger unit is not")
        absent_before = absent_before or absent
    return struct.pack(
        ">HBBBBBH",
        when.year,
        when.month,
        when.day,
        when.hour,
        when.minute,
        when.second,
        when.millisecond,
    )
