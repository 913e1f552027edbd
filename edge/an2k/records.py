"""Tagged-field records of ANSI/NIST-ITL 1-2011 (traditional encoding).

A record is ``T.NNN:value`` fields separated by GS (0x1D) and ended by FS (0x1C). A value is
subfields separated by RS (0x1E), each of information items separated by US (0x1F). Field
``.001`` (LEN) is the byte length of the whole record, itself and the FS included. Field
``.999`` holds binary image data, is the last field and runs to the FS that LEN points at.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from edge.an2k.errors import An2kFormatError, An2kValueError

FS, GS, RS, US = b"\x1c", b"\x1d", b"\x1e", b"\x1f"
SEPARATORS = frozenset(FS + GS + RS + US)
LEN_FIELD = 1
DATA_FIELD = 999
MAX_FIELD_NUMBER = 999
MAX_LEN_DIGITS = 10

Text = tuple[tuple[str, ...], ...]  # subfields of information items


@dataclass(frozen=True)
class Field:
    number: int
    value: Text | bytes  # bytes only for field 999

    def text(self) -> str:
        """The first information item of the first subfield."""
        if isinstance(self.value, bytes):
            raise An2kValueError(f"field {self.number} is binary")
        return self.value[0][0]


@dataclass(frozen=True)
class TaggedRecord:
    """A record without its LEN field, which is computed on writing."""

    record_type: int
    fields: tuple[Field, ...]

    def get(self, number: int) -> Field | None:
        return next((f for f in self.fields if f.number == number), None)

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)


def text(*subfields: tuple[str, ...] | str) -> Text:
    """Build a value: each argument a subfield, a plain string being a one-item subfield."""
    return tuple((s,) if isinstance(s, str) else tuple(s) for s in subfields)


def _encode_text(record_type: int, number: int, value: Text) -> bytes:
    if not value or any(not subfield for subfield in value):
        raise An2kValueError(f"field {record_type}.{number:03d} has an empty subfield list")
    parts = []
    for subfield in value:
        items = []
        for item in subfield:
            raw = item.encode("utf-8")
            if SEPARATORS & set(raw) or any(b < 0x20 or b == 0x7F for b in raw):
                raise An2kValueError(
                    f"field {record_type}.{number:03d} holds a control character: {item!r}"
                )
            items.append(raw)
        parts.append(US.join(items))
    return RS.join(parts)


def encode_record(record: TaggedRecord) -> bytes:
    numbers = [f.number for f in record.fields]
    if numbers != sorted(set(numbers)) or not numbers or numbers[0] <= LEN_FIELD:
        raise An2kValueError(
            f"Type-{record.record_type} fields must be distinct, ascending and after .001"
        )
    if numbers[-1] > MAX_FIELD_NUMBER:
        raise An2kValueError(f"field number {numbers[-1]} is over {MAX_FIELD_NUMBER}")
    body = []
    for f in record.fields:
        tag = f"{record.record_type}.{f.number:03d}:".encode()
        if isinstance(f.value, bytes):
            if f.number != DATA_FIELD:
                raise An2kValueError(f"only field .999 may be binary, not .{f.number:03d}")
            body.append(tag + f.value)
        else:
            body.append(tag + _encode_text(record.record_type, f.number, f.value))
    rest = GS + GS.join(body) + FS
    prefix = f"{record.record_type}.001:".encode()
    # LEN counts its own digits: grow the guess until it is consistent.
    length = len(prefix) + len(rest) + 1
    while len(prefix) + len(str(length)) + len(rest) != length:
        length = len(prefix) + len(str(length)) + len(rest)
    return prefix + str(length).encode() + rest


def decode_record(data: bytes, start: int) -> tuple[TaggedRecord, int]:
    """The record beginning at ``start`` and the offset just after it."""
    tag_end = data.find(b":", start, start + 16)
    dot = data.find(b".", start, tag_end) if tag_end >= 0 else -1
    if dot < 0:
        raise An2kFormatError(start, "record LEN tag", "no 'T.001:' tag here")
    record_type = _tag_number(data, start, dot, "record type")
    if _tag_number(data, dot + 1, tag_end, "field number") != LEN_FIELD:
        raise An2kFormatError(start, "record LEN tag", "the first field of a record is .001")
    length_end = tag_end + 1
    digits_end = length_end
    while digits_end < len(data) and data[digits_end : digits_end + 1].isdigit():
        digits_end += 1
    if not length_end < digits_end <= length_end + MAX_LEN_DIGITS:
        raise An2kFormatError(length_end, f"{record_type}.001 LEN", "not a decimal length")
    length = int(data[length_end:digits_end])
    end = start + length
    if length < digits_end - start + 1 or end > len(data):
        raise An2kFormatError(
            length_end,
            f"{record_type}.001 LEN",
            f"{length} does not fit the {len(data) - start} bytes left",
        )
    if data[end - 1 : end] != FS:
        raise An2kFormatError(end - 1, f"{record_type}.001 LEN", "the byte it points at is not FS")
    fields: list[Field] = []
    at = digits_end
    previous = LEN_FIELD
    while at < end - 1:
        if data[at : at + 1] != GS:
            raise An2kFormatError(at, f"Type-{record_type} field separator", "expected GS")
        at += 1
        colon = data.find(b":", at, min(at + 12, end))
        dot = data.find(b".", at, colon if colon >= 0 else at)
        if colon < 0 or dot < 0:
            raise An2kFormatError(at, f"Type-{record_type} field tag", "expected 'T.NNN:'")
        if _tag_number(data, at, dot, "record type") != record_type:
            raise An2kFormatError(at, f"Type-{record_type} field tag", "names another record type")
        number = _tag_number(data, dot + 1, colon, "field number")
        name = f"{record_type}.{number:03d}"
        if number <= previous or number > MAX_FIELD_NUMBER:
            raise An2kFormatError(at, name, "fields must be distinct and in ascending order")
        previous = number
        at = colon + 1
        if number == DATA_FIELD:
            fields.append(Field(number, bytes(data[at : end - 1])))
            at = end - 1
            break
        stop = data.find(GS, at, end - 1)
        stop = end - 1 if stop < 0 else stop
        fields.append(Field(number, _decode_text(data, at, stop, name)))
        at = stop
    return TaggedRecord(record_type, tuple(fields)), end


def _tag_number(data: bytes, start: int, stop: int, what: str) -> int:
    digits = data[start:stop]
    if not digits.isdigit() or len(digits) > 9:
        raise An2kFormatError(start, what, f"{digits!r} is not a number")
    return int(digits)


def _decode_text(data: bytes, start: int, stop: int, name: str) -> Text:
    raw = data[start:stop]
    if FS[0] in raw:
        raise An2kFormatError(start + raw.index(FS), name, "FS inside a field")
    for offset, byte in enumerate(raw):
        if (byte < 0x20 and byte not in (RS[0], US[0])) or byte == 0x7F:
            raise An2kFormatError(start + offset, name, f"control byte 0x{byte:02X}")
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise An2kFormatError(start + exc.start, name, "not UTF-8 text") from None
    return tuple(tuple(sub.split("\x1f")) for sub in value.split("\x1e"))
