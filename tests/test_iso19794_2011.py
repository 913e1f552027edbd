"""ISO/IEC 19794-2:2011 records: byte-exact round trips and strict rejection of bad input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from template_strategies import iso2011_records

from edge.templates.errors import TemplateFormatError, TemplateValueError
from edge.templates.iso19794_2_2005 import ExtendedDataBlock, IsoMinutia
from edge.templates.iso19794_2_2011 import (
    CaptureDateTime,
    Iso2011Record,
    QualityRecord,
    Representation,
    decode,
    encode,
)

WHEN = CaptureDateTime(2026, 11, 28, 15, 4, 5, 250)


def _rep(**changes: object) -> Representation:
    fields: dict[str, object] = {
        "finger_position": 7,
        "width": 256,
        "height": 288,
        "x_resolution": 197,
        "y_resolution": 197,
        "minutiae": (IsoMinutia(1, 10, 20, 64, 90),),
        "extended_data": (ExtendedDataBlock(2, b"\x00\x00"),),
        "capture_datetime": WHEN,
        "device_technology": 14,
        "device_vendor": 0x0101,
        "device_id": 0x0203,
        "quality_records": (QualityRecord(80, 0x0F, 0x1),),
    }
    fields.update(changes)
    return Representation(**fields)  # type: ignore[arg-type]


def _bytes() -> bytearray:
    return bytearray(encode(Iso2011Record((_rep(),))))


# Offsets in _bytes(): header 0..14, representation length 15, date-time 19, technology 28,
# vendor 29, device 31, quality count 33, quality record 34, finger position 39, view 40,
# resolutions 41, impression 45, width 46, height 48, minutia size/ending 50, count 51,
# minutia 52..57, extended length 58, block 60.


def test_layout_puts_size_resolution_and_capture_metadata_per_representation() -> None:
    data = _bytes()
    assert data[:8] == b"FMR\x00030\x00"
    assert struct.unpack(">IHB", data[8:15]) == (len(data), 1, 0)
    assert struct.unpack(">I", data[15:19])[0] == len(data) - 15
    assert struct.unpack(">HBBBBBH", data[19:28]) == (2026, 11, 28, 15, 4, 5, 250)
    assert struct.unpack(">BHHB", data[28:34]) == (14, 0x0101, 0x0203, 1)
    assert struct.unpack(">BHH", data[34:39]) == (80, 0x0F, 0x1)
    assert struct.unpack(">BBHHBHHBB", data[39:52]) == (7, 0, 197, 197, 0, 256, 288, 0x60, 1)
    assert data[52:58] == struct.pack(">HHBB", 1 << 14 | 10, 20, 64, 90)
    assert struct.unpack(">HHH", data[58:64]) == (6, 2, 6)  # block length includes its header


def test_five_byte_minutiae_carry_no_quality_and_read_back_as_not_reported() -> None:
    rep = _rep(minutia_size=5, minutiae=(IsoMinutia(0, 1, 2, 3, 254),))
    data = encode(Iso2011Record((rep,)))
    assert data[50] == 0x50 and len(data) == len(_bytes()) - 1
    assert decode(data).representations[0].minutiae[0].quality == 254
    with pytest.raises(TemplateValueError):
        encode(Iso2011Record((_rep(minutia_size=5),)))


def test_certification_records_are_present_only_with_the_record_flag() -> None:
    from edge.templates.iso19794_2_2011 import CertificationRecord

    rep = _rep(certifications=(CertificationRecord(0x1B, 1),))
    with pytest.raises(TemplateValueError):
        encode(Iso2011Record((rep,)))
    record = Iso2011Record((rep,), certification_flag=True)
    assert decode(encode(record)) == record


def _corrupt(offset: int, value: bytes) -> bytes:
    data = _bytes()
    data[offset : offset + len(value)] = value
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "field", "offset"),
    [
        (_corrupt(4, b"020"), "version", 4),
        (_corrupt(8, b"\x00\x00\x00\x01"), "record length", 8),
        (_corrupt(12, b"\x00\x00"), "number of representations", 12),
        (_corrupt(14, b"\x02"), "certification flag", 14),
        (_corrupt(15, b"\x00\x00\x00\x05"), "representation length", 15),
        (_corrupt(15, b"\x00\x00\x01\x00"), "representation length", 15),
        (_corrupt(21, b"\x0d"), "capture month", 21),
        (_corrupt(21, b"\xff"), "capture day", 22),
        (_corrupt(28, b"\x15"), "capture device technology", 28),
        (_corrupt(34, b"\x65"), "quality score", 34),
        (_corrupt(39, b"\x0b"), "finger position", 39),
        (_corrupt(40, b"\x10"), "view number", 40),
        (_corrupt(45, b"\x0a"), "impression type", 45),
        (_corrupt(50, b"\x70"), "minutia field length", 50),
        (_corrupt(50, b"\x62"), "ridge ending type", 50),
        (_corrupt(52, b"\xc0"), "minutia type", 52),
        (_corrupt(52, b"\x41\x00"), "minutia x/y", 52),
        (_corrupt(57, b"\x65"), "minutia quality", 57),
        (_corrupt(62, b"\x00\x03"), "extended data block length", 62),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_malformed_fields_are_rejected_naming_field_and_offset(
    data: bytes, field: str, offset: int
) -> None:
    with pytest.raises(TemplateFormatError) as caught:
        decode(data)
    assert (caught.value.field, caught.value.offset) == (field, offset)


def test_representation_length_that_leaves_bytes_unread_is_rejected() -> None:
    data = _bytes() + b"\x00"
    data[8:12] = struct.pack(">I", len(data))
    data[15:19] = struct.pack(">I", len(data) - 15)
    with pytest.raises(TemplateFormatError) as caught:
        decode(bytes(data))
    assert caught.value.field == "representation length"


@given(iso2011_records())
def test_any_valid_record_survives_encode_then_decode(record: Iso2011Record) -> None:
    data = encode(record)
    assert decode(data) == record
    assert encode(decode(data)) == data


@given(iso2011_records(), st.data())
def test_every_proper_prefix_of_a_record_is_rejected(
    record: Iso2011Record, data: st.DataObject
) -> None:
    encoded = encode(record)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(TemplateFormatError):
        decode(encoded[:cut])
