"""A booking submission as an ANSI/NIST-ITL 1-2011 transaction: write it, read it back.

Records: one Type-1 (transaction information), any Type-2 (user-defined descriptive text, the
fields passed in as they are, EBTS style), Type-14 variable-resolution fingerprint images
(WSQ at 500 ppi) and Type-9 minutiae carrying the INCITS 378 block (fields 9.126-9.137) and,
when asked for, the standard-format fields 9.005-9.012 (FMT "S"). ANSI/NIST-ITL 1-2011 calls
those legacy fields, described in 1-2007, and keeps them for interchange with older systems.
Only these record types are read; any other is refused by name rather than skipped.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge.an2k import wsq
from edge.an2k.errors import An2kFormatError, An2kValueError
from edge.an2k.records import Field, TaggedRecord, Text, decode_record, encode_record, text
from edge.templates.ansi378_2004 import AnsiMinutia

VERSION = "0500"  # ANSI/NIST-ITL 1-2011
NATIVE_RESOLUTION = "19.69"  # pixels per mm: 500 ppi
TYPE1_MANDATORY = {
    2: "VER",
    3: "CNT",
    4: "TOT",
    5: "DAT",
    7: "DAI",
    8: "ORI",
    9: "TCN",
    11: "NSR",
    12: "NTR",
}
TYPE14_MANDATORY = {
    **{2: "IDC", 3: "IMP", 4: "SRC", 5: "FCD", 6: "HLL", 7: "VLL", 8: "SLC"},
    **{9: "THPS", 10: "TVPS", 11: "CGA", 12: "BPX", 13: "FGP", 999: "DATA"},
}
TYPE9_MANDATORY = {2: "IDC", 3: "IMP", 4: "FMT"}
SUPPORTED_TYPES = frozenset({1, 2, 9, 14})
FINGER_POSITIONS = range(16)  # 0 unknown, 1-10 fingers, 11/12 plain thumbs, 13-15 slaps
SLAP_POSITIONS = {13: range(2, 6), 14: range(7, 11), 15: (1, 6)}
IMPRESSION_TYPES = frozenset({0, 1, 2, 3, 8})
AMPUTATION_CODES = frozenset({"XX", "UP"})  # amputated, unable to print
DEVICE_MODES = frozenset({"CONTROLLED", "ASSISTED", "OBSERVED", "UNATTENDED", "UNKNOWN"})
COMPRESSIONS = frozenset({"NONE", "WSQ20", "JPEGB", "JPEGL", "JP2", "JP2L", "PNG"})
NQM_SCORES = frozenset({0, 1, 2, 3, 4, 5, 254, 255})
INCITS_FORMAT_OWNER = 27  # INCITS M1 (0x001B)
INCITS_FORMAT_TYPE = 513  # finger minutiae record (0x0201)
# Standard-format Type-9 fields (ANSI/NIST-ITL 1-2007; "legacy" in 1-2011)
READING_METHODS = frozenset({"A", "U", "E", "M"})  # OFR: automatic, editable but unedited,
# edited, manual
PATTERN_TABLE_CODES = frozenset(
    {"PA", "TA", "RL", "UL", "PW", "CP", "DL", "AW", "WN", "RS", "LS", "SR", "XX", "UN"}
)
STANDARD_MINUTIA_TYPES = frozenset("ABCD")  # ending, bifurcation, compound, undetermined
MAX_STANDARD_MINUTIAE = 999  # MRC indexes and ridge-count neighbours are three digits
MAX_STANDARD_COORDINATE = 9999  # XXXX and YYYY: four digits of 0.01 mm
MAX_STANDARD_QUALITY = 63  # 0 manual, 1 no confidence given, 2 (best) .. 63 (worst)
MAX_RIDGE_COUNT = 99


@dataclass(frozen=True)
class TransactionInfo:
    """Type-1 content that the caller decides."""

    tot: str  # type of transaction, e.g. "CAR" (criminal tenprint submission, answer required)
    dai: str  # destination agency
    ori: str  # originating agency
    tcn: str  # transaction control number
    date: datetime.date
    priority: int | None = None  # PRY 1..9
    tcr: str | None = None  # transaction control reference
    domain: tuple[str, str] | None = None  # DOM: name, version (e.g. "EBTS", "11.1")
    gmt: datetime.datetime | None = None  # GMT, UTC


@dataclass(frozen=True)
class Segment:
    """One finger's box inside a slap image (SEG), in pixels."""

    finger_position: int
    left: int
    right: int
    top: int
    bottom: int


@dataclass(frozen=True)
class FingerprintImage:
    """A Type-14 record: one finger, or a slap (13, 14, 15) with its segments."""

    finger_position: int
    pixels: npt.NDArray[np.uint8] = field(compare=False)  # equality compares the metadata
    impression_type: int = 0
    capture_date: datetime.date = datetime.date(1970, 1, 1)
    source_agency: str = ""
    quality: tuple[tuple[int, int], ...] = ()  # NQM: (finger position, NFIQ 1..5 / 254 / 255)
    amputations: tuple[tuple[int, str], ...] = ()  # AMP: (finger position, "XX" or "UP")
    segments: tuple[Segment, ...] = ()
    device_mode: str | None = None  # DMM
    wsq_data: bytes = field(default=b"", compare=False)  # as read; written data is re-encoded


@dataclass(frozen=True)
class StandardMinutia:
    """One minutia of 9.012 MRC in the standard's own units (see docs/formats.md)."""

    x: int  # 0.01 mm rightwards from the left edge
    y: int  # 0.01 mm upwards from the bottom edge
    theta: int  # degrees 0..359 counter-clockwise from the x axis, INCITS 378 angle + 180
    quality: int  # 0 manual, 1 no confidence given, 2 (best) .. 63 (worst)
    kind: str  # A ridge ending, B bifurcation, C compound, D undetermined
    ridge_counts: tuple[tuple[int, int], ...] = ()  # (neighbour's MRC index, ridges crossed)


@dataclass(frozen=True)
class StandardMinutiae:
    """Fields 9.005-9.012: the standard-format (FMT "S") minutiae of one finger."""

    system: str  # OFR name of the originating fingerprint reading system
    method: str  # OFR: A automatic, U editable but unedited, E edited, M manual
    minutiae: tuple[StandardMinutia, ...] = ()
    subsystem: str | None = None  # OFR optional two-character subsystem designator
    pattern: tuple[tuple[str, str], ...] = (("T", "UN"),)  # FPC: (T table / U user, class)
    cores: tuple[tuple[int, int], ...] = ()  # CRP: (x, y) in 0.01 mm, as 9.012
    deltas: tuple[tuple[int, int], ...] = ()  # DLT
    ridge_counts: bool = False  # RDG: whether 9.012 carries ridge counts


@dataclass(frozen=True)
class FingerMinutiae:
    """A Type-9 record with the INCITS 378 block for one finger view, and optionally the
    standard-format fields (then FMT is "S", else "U")."""

    finger_position: int
    width: int
    height: int
    x_resolution: int  # pixels per cm
    y_resolution: int
    minutiae: tuple[AnsiMinutia, ...]
    impression_type: int = 0
    view_number: int = 0
    finger_quality: int = 0
    product_id: int = 0  # CBEFF product identifier of the extractor
    equipment: tuple[int, int] = (0, 0)  # capture equipment compliance, id
    standard: StandardMinutiae | None = None


@dataclass(frozen=True)
class Transaction:
    info: TransactionInfo
    descriptive: tuple[Mapping[int, Text], ...] = ()  # Type-2 fields by number, beyond .002
    images: tuple[FingerprintImage, ...] = ()
    minutiae: tuple[FingerMinutiae, ...] = ()


# --- writing ---------------------------------------------------------------------------------


def write(transaction: Transaction) -> bytes:
    """The whole transaction; inconsistent content raises :class:`An2kValueError`."""
    others: list[TaggedRecord] = []
    idc = 0
    for fields in transaction.descriptive:
        idc += 1
        others.append(_type2(fields, idc))
    for image in transaction.images:
        idc += 1
        others.append(_type14(image, idc, transaction.info.ori))
    for view in transaction.minutiae:
        idc += 1
        others.append(_type9(view, idc))
    if idc > 999:
        raise An2kValueError(f"{idc} records exceed the 999 a transaction may list")
    parts = [encode_record(_type1(transaction.info, others))]
    parts.extend(encode_record(r) for r in others)
    return b"".join(parts)


def _idc(record: TaggedRecord) -> str:
    found = record.get(2)
    return found.text() if found else "0"


def _type1(info: TransactionInfo, others: Sequence[TaggedRecord]) -> TaggedRecord:
    for name in ("tot", "dai", "ori", "tcn"):
        if not getattr(info, name):
            raise An2kValueError(f"Type-1 {name.upper()} is required")
    cnt = text(("1", str(len(others))), *[(str(r.record_type), _idc(r)) for r in others])
    fields = [
        Field(2, text(VERSION)),
        Field(3, cnt),
        Field(4, text(info.tot)),
        Field(5, text(info.date.strftime("%Y%m%d"))),
    ]
    if info.priority is not None:
        if not 1 <= info.priority <= 9:
            raise An2kValueError(f"Type-1 PRY {info.priority} is not 1..9")
        fields.append(Field(6, text(str(info.priority))))
    fields += [Field(7, text(info.dai)), Field(8, text(info.ori)), Field(9, text(info.tcn))]
    if info.tcr:
        fields.append(Field(10, text(info.tcr)))
    fields += [Field(11, text(NATIVE_RESOLUTION)), Field(12, text(NATIVE_RESOLUTION))]
    if info.domain:
        fields.append(Field(13, text(info.domain)))
    if info.gmt:
        fields.append(Field(14, text(info.gmt.strftime("%Y%m%d%H%M%SZ"))))
    return TaggedRecord(1, tuple(fields))


def _type2(fields: Mapping[int, Text], idc: int) -> TaggedRecord:
    if any(number <= 2 or number >= 999 for number in fields):
        raise An2kValueError("Type-2 user fields are numbered 3..998 (.001/.002 are written here)")
    body = [Field(2, text(str(idc)))]
    body += [Field(number, fields[number]) for number in sorted(fields)]
    return TaggedRecord(2, tuple(body))


def _check_image(image: FingerprintImage) -> None:
    if image.finger_position not in FINGER_POSITIONS:
        raise An2kValueError(f"finger position {image.finger_position} is not 0..15")
    if image.impression_type not in IMPRESSION_TYPES:
        raise An2kValueError(f"impression type {image.impression_type} is not a live/ink code")
    height, width = image.pixels.shape
    allowed = SLAP_POSITIONS.get(image.finger_position, (image.finger_position,))
    for position, score in image.quality:
        if position not in allowed or score not in NQM_SCORES:
            raise An2kValueError(f"NQM ({position}, {score}) does not fit this image")
    for position, code in image.amputations:
        if position not in allowed or code not in AMPUTATION_CODES:
            raise An2kValueError(f"AMP ({position}, {code!r}) does not fit this image")
    for s in image.segments:
        if s.finger_position not in allowed or image.finger_position not in SLAP_POSITIONS:
            raise An2kValueError(f"segment for finger {s.finger_position} needs a slap image")
        if not (0 <= s.left < s.right < width and 0 <= s.top < s.bottom < height):
            raise An2kValueError(f"segment of finger {s.finger_position} is outside the image")
    if image.device_mode is not None and image.device_mode not in DEVICE_MODES:
        raise An2kValueError(f"DMM {image.device_mode!r} is not one of {sorted(DEVICE_MODES)}")


def _type14(image: FingerprintImage, idc: int, ori: str) -> TaggedRecord:
    _check_image(image)
    height, width = image.pixels.shape
    fields = [
        Field(2, text(str(idc))),
        Field(3, text(str(image.impression_type))),
        Field(4, text(image.source_agency or ori)),
        Field(5, text(image.capture_date.strftime("%Y%m%d"))),
        Field(6, text(str(width))),
        Field(7, text(str(height))),
        Field(8, text("1")),  # THPS/TVPS are pixels per inch
        Field(9, text(str(wsq.PPI))),
        Field(10, text(str(wsq.PPI))),
        Field(11, text("WSQ20")),
        Field(12, text("8")),
        Field(13, text(str(image.finger_position))),
    ]
    if image.amputations:
        fields.append(Field(18, text(*[(str(p), c) for p, c in image.amputations])))
    if image.segments:
        fields.append(
            Field(
                21,
                text(
                    *[
                        tuple(str(v) for v in (s.finger_position, s.left, s.right, s.top, s.bottom))
                        for s in image.segments
                    ]
                ),
            )
        )
    if image.quality:
        fields.append(Field(22, text(*[(str(p), str(q)) for p, q in image.quality])))
    if image.device_mode:
        fields.append(Field(30, text(image.device_mode)))
    fields.append(Field(999, wsq.encode(image.pixels)))
    return TaggedRecord(14, tuple(fields))


def _type9(view: FingerMinutiae, idc: int) -> TaggedRecord:
    if view.finger_position not in range(11):
        raise An2kValueError(f"Type-9 finger position {view.finger_position} is not 0..10")
    if len(view.minutiae) > 255:
        raise An2kValueError("INCITS 378 holds at most 255 minutiae per view")
    for m in view.minutiae:
        if not (0 <= m.x < view.width and 0 <= m.y < view.height and 0 <= m.angle <= 179):
            raise An2kValueError(f"minutia ({m.x}, {m.y}, {m.angle}) is outside the view")
    fmd = [
        (str(i), str(m.x), str(m.y), str(m.angle), str(m.quality), _MINUTIA_LETTER[m.kind])
        for i, m in enumerate(view.minutiae, start=1)
    ]
    fields = [
        Field(2, text(str(idc))),
        Field(3, text(str(view.impression_type))),
        Field(4, text("U" if view.standard is None else "S")),
    ]
    if view.standard is not None:
        problem = _standard_problem(view.standard, view)
        if problem:
            raise An2kValueError(f"{problem[0]}: {problem[1]}")
        fields += _standard_fields(view.standard, view.finger_position)
    fields += [
        Field(
            126, text((str(INCITS_FORMAT_OWNER), str(INCITS_FORMAT_TYPE), f"{view.product_id:08X}"))
        ),
        Field(127, text((f"{view.equipment[0]:X}", f"{view.equipment[1]:X}"))),
        Field(128, text(str(view.width))),
        Field(129, text(str(view.height))),
        Field(130, text("2")),  # pixels per cm, as INCITS 378 counts
        Field(131, text(str(view.x_resolution))),
        Field(132, text(str(view.y_resolution))),
        Field(133, text(str(view.view_number))),
        Field(134, text(str(view.finger_position))),
        Field(135, text(str(view.finger_quality))),
        Field(136, text(str(len(view.minutiae)))),
    ]
    if fmd:
        fields.append(Field(137, text(*fmd)))
    return TaggedRecord(9, tuple(fields))


def _standard_fields(standard: StandardMinutiae, finger_position: int) -> list[Field]:
    ofr: tuple[str, ...] = (standard.system, standard.method)
    if standard.subsystem is not None:
        ofr += (standard.subsystem,)
    fields = [
        Field(5, text(ofr)),
        Field(6, text(f"{finger_position:02d}")),
        Field(7, text(*standard.pattern)),
    ]
    if standard.cores:
        fields.append(Field(8, text(*[f"{x:04d}{y:04d}" for x, y in standard.cores])))
    if standard.deltas:
        fields.append(Field(9, text(*[f"{x:04d}{y:04d}" for x, y in standard.deltas])))
    fields += [
        Field(10, text(str(len(standard.minutiae)))),
        Field(11, text("1" if standard.ridge_counts else "0")),
    ]
    if standard.minutiae:
        mrc = [
            (
                f"{index:03d}",
                f"{m.x:04d}{m.y:04d}{m.theta:03d}",
                f"{m.quality:02d}",
                m.kind,
                *[f"{n:03d},{c:02d}" for n, c in m.ridge_counts],
            )
            for index, m in enumerate(standard.minutiae, start=1)
        ]
        fields.append(Field(12, text(*mrc)))
    return fields


def _extent(pixels: int, per_cm: int) -> int:
    """An image side in 0.01 mm (rounded half up) as far as four digits reach; the four-digit
    limit when the resolution is not known."""
    limit = MAX_STANDARD_COORDINATE + 1
    return min((2000 * pixels + per_cm) // (2 * per_cm), limit) if per_cm else limit


def _standard_problem(standard: StandardMinutiae, view: FingerMinutiae) -> tuple[str, str] | None:
    """The first field of 9.005-9.012 that breaks the standard, and why; None when all fit."""
    if not standard.system or standard.method not in READING_METHODS:
        return "9.005 OFR", f"needs a system name and a method of {sorted(READING_METHODS)}"
    if standard.subsystem is not None and len(standard.subsystem) != 2:
        return "9.005 OFR", f"subsystem {standard.subsystem!r} is not two characters"
    if not standard.pattern:
        return "9.007 FPC", "needs at least one pattern class"
    for table, code in standard.pattern:
        if (
            table not in ("T", "U")
            or not code
            or (table == "T" and code not in PATTERN_TABLE_CODES)
        ):
            return "9.007 FPC", f"({table!r}, {code!r}) is not a table T or user U class"
    width = _extent(view.width, view.x_resolution)
    height = _extent(view.height, view.y_resolution)
    for name, points in (("9.008 CRP", standard.cores), ("9.009 DLT", standard.deltas)):
        for x, y in points:
            if not (0 <= x < width and 0 <= y < height):
                return name, f"({x}, {y}) is outside the {width} x {height} (0.01 mm) image"
    count = len(standard.minutiae)
    if count > MAX_STANDARD_MINUTIAE:
        return "9.010 MIN", f"{count} minutiae, at most {MAX_STANDARD_MINUTIAE}"
    for index, m in enumerate(standard.minutiae, start=1):
        where = f"minutia {index}"
        if not (0 <= m.x < width and 0 <= m.y < height):
            return "9.012 MRC", f"{where} ({m.x}, {m.y}) is outside the {width} x {height} image"
        if not (0 <= m.theta <= 359 and 0 <= m.quality <= MAX_STANDARD_QUALITY):
            return "9.012 MRC", f"{where}: theta {m.theta} or quality {m.quality} out of range"
        if m.kind not in STANDARD_MINUTIA_TYPES:
            return "9.012 MRC", f"{where}: type {m.kind!r} is not A, B, C or D"
        if m.ridge_counts and not standard.ridge_counts:
            return "9.011 RDG", f"is 0 but {where} carries ridge counts"
        for neighbour, ridges in m.ridge_counts:
            if not (1 <= neighbour <= count and neighbour != index):
                return "9.012 MRC", f"{where}: neighbour {neighbour} is not another minutia"
            if not 0 <= ridges <= MAX_RIDGE_COUNT:
                return "9.012 MRC", f"{where}: ridge count {ridges} is not 0..{MAX_RIDGE_COUNT}"
    return None


_MINUTIA_LETTER = {1: "A", 2: "B", 0: "D"}  # ridge ending, bifurcation, other/undetermined
_LETTER_KIND = {v: k for k, v in _MINUTIA_LETTER.items()}


# --- reading ---------------------------------------------------------------------------------


def read(data: bytes, *, decode_images: bool = True) -> Transaction:
    """Parse and check a whole transaction; raises :class:`An2kFormatError` naming the place."""
    data = bytes(data)
    first, at = decode_record(data, 0)
    if first.record_type != 1:
        raise An2kFormatError(0, "Type-1", "a transaction starts with its Type-1 record")
    _require(first, TYPE1_MANDATORY, 0)
    version = first.get(2)
    assert version is not None
    if not version.text().startswith("05"):
        raise An2kFormatError(
            0, "1.002 VER", f"{version.text()!r} is not an ANSI/NIST-ITL 2011 version"
        )
    listed = _cnt(first)
    info = _info(first)
    descriptive: list[Mapping[int, Text]] = []
    images: list[FingerprintImage] = []
    minutiae: list[FingerMinutiae] = []
    for index, (record_type, idc) in enumerate(listed, start=1):
        start = at
        if at >= len(data):
            raise An2kFormatError(
                at, "1.003 CNT", f"lists {len(listed)} records, {index - 1} present"
            )
        record, at = decode_record(data, at)
        where = f"record {index} (Type-{record.record_type})"
        if record.record_type != record_type:
            raise An2kFormatError(start, where, f"CNT says Type-{record_type}")
        if record.record_type not in SUPPORTED_TYPES:
            raise An2kFormatError(start, where, "record type not supported by this reader")
        if _idc(record) != idc:
            raise An2kFormatError(
                start, f"{record_type}.002 IDC", f"{_idc(record)!r}, CNT says {idc!r}"
            )
        if record_type == 2:
            descriptive.append(
                {
                    f.number: f.value
                    for f in record
                    if f.number > 2 and not isinstance(f.value, bytes)
                }
            )
        elif record_type == 14:
            images.append(_read_type14(record, start, decode_images))
        elif record_type == 9:
            minutiae.append(_read_type9(record, start))
        else:
            raise An2kFormatError(start, where, "a transaction has one Type-1 record")
    if at != len(data):
        raise An2kFormatError(
            at, "transaction", f"{len(data) - at} bytes after the records CNT lists"
        )
    return Transaction(info, tuple(descriptive), tuple(images), tuple(minutiae))


def _require(record: TaggedRecord, mandatory: Mapping[int, str], start: int) -> None:
    for number, name in mandatory.items():
        if record.get(number) is None:
            raise An2kFormatError(start, f"{record.record_type}.{number:03d} {name}", "missing")


def _cnt(record: TaggedRecord) -> list[tuple[int, str]]:
    value = record.get(3)
    assert value is not None and not isinstance(value.value, bytes)
    subfields = value.value
    well_formed = bool(subfields) and all(
        len(s) == 2 and s[0].isascii() and s[0].isdigit() for s in subfields
    )
    pairs = [(int(s[0]), s[1]) for s in subfields] if well_formed else []
    count = pairs[0][1] if pairs else ""
    if (
        not pairs
        or pairs[0][0] != 1
        or not (count.isascii() and count.isdigit())
        or int(count) != len(pairs) - 1
    ):
        raise An2kFormatError(
            0, "1.003 CNT", "not (1, count) followed by one (type, IDC) per record"
        )
    return pairs[1:]


def _date(value: str, name: str, start: int) -> datetime.date:
    try:
        if len(value) != 8 or not value.isdigit():
            raise ValueError
        return datetime.datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise An2kFormatError(start, name, f"{value!r} is not a YYYYMMDD date") from None


def _int(record: TaggedRecord, number: int, name: str, start: int, low: int, high: int) -> int:
    found = record.get(number)
    raw = found.text() if found else ""
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise An2kFormatError(
            start, f"{record.record_type}.{number:03d} {name}", f"{raw!r} is not {low}..{high}"
        )
    return int(raw)


def _info(record: TaggedRecord) -> TransactionInfo:
    def get(number: int) -> str | None:
        found = record.get(number)
        return found.text() if found else None

    priority = _int(record, 6, "PRY", 0, 1, 9) if record.get(6) else None
    domain = record.get(13)
    gmt = get(14)
    when = None
    if gmt is not None:
        try:
            when = datetime.datetime.strptime(gmt, "%Y%m%d%H%M%SZ").replace(tzinfo=datetime.UTC)
        except ValueError:
            raise An2kFormatError(0, "1.014 GMT", f"{gmt!r} is not YYYYMMDDhhmmssZ") from None
    dom: tuple[str, str] | None = None
    if domain is not None and not isinstance(domain.value, bytes):
        items = domain.value[0]
        dom = (items[0], items[1] if len(items) > 1 else "")
    return TransactionInfo(
        tot=get(4) or "",
        dai=get(7) or "",
        ori=get(8) or "",
        tcn=get(9) or "",
        date=_date(get(5) or "", "1.005 DAT", 0),
        priority=priority,
        tcr=get(10),
        domain=dom,
        gmt=when,
    )


def _pairs(record: TaggedRecord, number: int) -> list[tuple[str, ...]]:
    found = record.get(number)
    if found is None or isinstance(found.value, bytes):
        return []
    return list(found.value)


def _read_type14(record: TaggedRecord, start: int, decode_images: bool) -> FingerprintImage:
    _require(record, TYPE14_MANDATORY, start)
    impression = _int(record, 3, "IMP", start, 0, 255)
    if impression not in IMPRESSION_TYPES:
        raise An2kFormatError(start, "14.003 IMP", f"{impression} is not a live or ink code")
    width = _int(record, 6, "HLL", start, 1, wsq.MAX_SIDE)
    height = _int(record, 7, "VLL", start, 1, wsq.MAX_SIDE)
    _int(record, 8, "SLC", start, 0, 2)
    _int(record, 12, "BPX", start, 8, 8)
    position = _int(record, 13, "FGP", start, 0, 15)
    compression = record.get(11)
    assert compression is not None
    if compression.text() not in COMPRESSIONS:
        raise An2kFormatError(start, "14.011 CGA", f"{compression.text()!r} is not a known code")
    if compression.text() != "WSQ20":
        raise An2kFormatError(start, "14.011 CGA", f"{compression.text()} images are not read here")
    data = record.get(999)
    assert data is not None and isinstance(data.value, bytes)
    if wsq.frame_size(data.value) != (width, height):
        raise An2kFormatError(start, "14.999 DATA", "WSQ frame size differs from HLL/VLL")
    pixels = wsq.decode(data.value).pixels if decode_images else np.zeros((height, width), np.uint8)
    try:
        quality = tuple((int(s[0]), int(s[1])) for s in _pairs(record, 22))
        amputations = tuple((int(s[0]), s[1]) for s in _pairs(record, 18))
        segments = tuple(Segment(*(int(v) for v in s)) for s in _pairs(record, 21))
    except (ValueError, IndexError, TypeError):
        raise An2kFormatError(
            start, "14.018/021/022", "subfields are not the expected numbers"
        ) from None
    mode = record.get(30)
    image = FingerprintImage(
        finger_position=position,
        pixels=pixels,
        impression_type=impression,
        capture_date=_date(record.get(5).text(), "14.005 FCD", start),  # type: ignore[union-attr]
        source_agency=record.get(4).text(),  # type: ignore[union-attr]
        quality=quality,
        amputations=amputations,
        segments=segments,
        device_mode=mode.text() if mode else None,
        wsq_data=data.value,
    )
    try:
        _check_image(image)
    except An2kValueError as exc:
        raise An2kFormatError(start, "Type-14", str(exc)) from None
    return image


def _read_type9(record: TaggedRecord, start: int) -> FingerMinutiae:
    _require(record, TYPE9_MANDATORY, start)
    for number in range(126, 137):
        if record.get(number) is None:
            raise An2kFormatError(start, f"9.{number:03d}", "the INCITS 378 block is incomplete")
    width = _int(record, 128, "HLL", start, 1, 0xFFFF)
    height = _int(record, 129, "VLL", start, 1, 0xFFFF)
    count = _int(record, 136, "NOM", start, 0, 255)
    fmd = _pairs(record, 137)
    if len(fmd) != count:
        raise An2kFormatError(start, "9.137 FMD", f"{len(fmd)} minutiae, NOM says {count}")
    minutiae = []
    for number, items in enumerate(fmd, start=1):
        try:
            index, x, y, angle, quality = (int(v) for v in items[:5])
            kind = _LETTER_KIND[items[5]]
        except (ValueError, IndexError, KeyError):
            raise An2kFormatError(start, "9.137 FMD", f"minutia {number} is malformed") from None
        if index != number or not (
            0 <= x < width and 0 <= y < height and 0 <= angle <= 179 and 0 <= quality <= 100
        ):
            raise An2kFormatError(start, "9.137 FMD", f"minutia {number} is out of range")
        minutiae.append(AnsiMinutia(kind, x, y, angle, quality))
    cbeff = _pairs(record, 126)[0]
    equipment = _pairs(record, 127)[0]
    try:
        product = int(cbeff[2], 16) if len(cbeff) > 2 else 0
        compliance, device = int(equipment[0], 16), int(equipment[1], 16)
    except (ValueError, IndexError):
        raise An2kFormatError(
            start, "9.126/127", "CBEFF or equipment ids are not hexadecimal"
        ) from None
    view = FingerMinutiae(
        finger_position=_int(record, 134, "FGP", start, 0, 10),
        width=width,
        height=height,
        x_resolution=_int(record, 131, "THPS", start, 0, 0xFFFF),
        y_resolution=_int(record, 132, "TVPS", start, 0, 0xFFFF),
        minutiae=tuple(minutiae),
        impression_type=_int(record, 3, "IMP", start, 0, 255),
        view_number=_int(record, 133, "FVW", start, 0, 15),
        finger_quality=_int(record, 135, "FQM", start, 0, 100),
        product_id=product,
        equipment=(compliance, device),
    )
    fmt = record.get(4).text()  # type: ignore[union-attr]
    present = [n for n in range(5, 13) if record.get(n) is not None]
    if fmt == "U":
        if present:
            raise An2kFormatError(start, f"9.{present[0]:03d}", "standard field with FMT 'U'")
        return view
    if fmt != "S":
        raise An2kFormatError(start, "9.004 FMT", f"{fmt!r} is not S or U")
    standard = _read_standard(record, start, view.finger_position)
    problem = _standard_problem(standard, view)
    if problem:
        raise An2kFormatError(start, *problem)
    return dataclasses.replace(view, standard=standard)


_STANDARD_MANDATORY = {5: "OFR", 6: "FGP", 7: "FPC", 10: "MIN", 11: "RDG"}
_INDEX = re.compile(r"[0-9]{1,3}")
_QUALITY = re.compile(r"[0-9]{1,2}")
_POINT = re.compile(r"[0-9]{8}")
_POSITION = re.compile(r"[0-9]{11}")
_RIDGE_COUNT = re.compile(r"([0-9]{1,3}),([0-9]{1,2})")


def _read_standard(record: TaggedRecord, start: int, finger_position: int) -> StandardMinutiae:
    """Fields 9.005-9.012 as written (values are range-checked by _standard_problem)."""
    _require(record, _STANDARD_MANDATORY, start)
    ofr = _pairs(record, 5)
    if len(ofr) != 1 or len(ofr[0]) not in (2, 3):
        raise An2kFormatError(start, "9.005 OFR", "not one subfield of name, method[, subsystem]")
    position = _int(record, 6, "FGP", start, 0, 10)
    if position != finger_position:
        raise An2kFormatError(start, "9.006 FGP", f"{position}, 9.134 says {finger_position}")
    pattern = _pairs(record, 7)
    if any(len(items) != 2 for items in pattern):
        raise An2kFormatError(start, "9.007 FPC", "a subfield is not (table, class)")
    points = []
    for number, name in ((8, "9.008 CRP"), (9, "9.009 DLT")):
        found = _pairs(record, number)
        if not all(len(items) == 1 and _POINT.fullmatch(items[0]) for items in found):
            raise An2kFormatError(start, name, "a position is not XXXXYYYY")
        points.append(tuple((int(i[0][:4]), int(i[0][4:])) for i in found))
    count = _int(record, 10, "MIN", start, 0, MAX_STANDARD_MINUTIAE)
    ridge_counts = _int(record, 11, "RDG", start, 0, 1) == 1
    mrc = _pairs(record, 12)
    if len(mrc) != count:
        raise An2kFormatError(start, "9.012 MRC", f"{len(mrc)} minutiae, MIN says {count}")
    minutiae = []
    for number, items in enumerate(mrc, start=1):
        index, xyt, quality, kind, *counts = items if len(items) >= 4 else ("",) * 4
        matches = [_RIDGE_COUNT.fullmatch(c) for c in counts]
        if not (
            _INDEX.fullmatch(index)
            and int(index) == number
            and _POSITION.fullmatch(xyt)
            and _QUALITY.fullmatch(quality)
            and all(matches)
        ):
            raise An2kFormatError(start, "9.012 MRC", f"minutia {number} is malformed")
        pairs = tuple((int(m.group(1)), int(m.group(2))) for m in matches if m)
        x, y, theta = int(xyt[:4]), int(xyt[4:8]), int(xyt[8:])
        minutiae.append(StandardMinutia(x, y, theta, int(quality), kind, pairs))
    return StandardMinutiae(
        system=ofr[0][0],
        method=ofr[0][1],
        minutiae=tuple(minutiae),
        subsystem=ofr[0][2] if len(ofr[0]) == 3 else None,
        pattern=tuple((items[0], items[1]) for items in pattern),
        cores=points[0],
        deltas=points[1],
        ridge_counts=ridge_counts,
    )
