"""ANSI INCITS 378-2004 records: byte-exact round trips and strict rejection of bad input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from template_strategies import ansi_records

from edge.templates.ansi378_2004 import (
    AnsiFingerView,
    AnsiMinutia,
    AnsiMinutiaeRecord,
    decode,
    encode,
)
from edge.templates.errors import TemplateFormatError, TemplateValueError
from edge.templates.iso19794_2_2005 import ExtendedDataBlock

ONE = AnsiMinutia(kind=2, x=10, y=20, angle=45, quality=80)


def _record(*views: AnsiFingerView, width: int = 300, height: int = 400) -> AnsiMinutiaeRecord:
    return AnsiMinutiaeRecord(width, height, 197, 197, views, product_owner=0x1234, product_type=7)


def _bytes() -> bytearray:
    view = AnsiFingerView(2, 0, 0, 70, (ONE,), (ExtendedDataBlock(1, b"\x00\x01\x02\x03"),))
    return bytearray(encode(_record(view)))


def test_header_is_26_bytes_with_a_two_byte_length_and_the_cbeff_product_id() -> None:
    data = _bytes()
    assert data[:8] == b"FMR\x00 20\x00"
    assert struct.unpack(">H", data[8:10])[0] == len(data)
    assert struct.unpack(">HH", data[10:14]) == (0x1234, 7)
    assert data[26:30] == bytes([2, 0x00, 70, 1])  # first view header follows at offset 26
    assert data[30:36] == struct.pack(">HHBB", 2 << 14 | 10, 20, 45, 80)


def test_extended_block_length_counts_its_own_four_byte_header() -> None:
    data = _bytes()
    assert struct.unpack(">HHH", data[36:42]) == (8, 1, 8)  # area 8, type 1, block length 8


def test_records_over_64_kib_use_the_zero_then_four_byte_length_form() -> None:
    views = tuple(AnsiFingerView(i % 11, i // 11, 0, 0, (ONE,) * 255) for i in range(45))
    data = encode(_record(*views))
    assert len(data) > 0xFFFF
    assert struct.unpack(">HI", data[8:14]) == (0, len(data))
    assert decode(data) == _record(*views)


def test_long_length_form_for_a_short_record_is_refused() -> None:
    data = _bytes()
    long_form = bytes(data[:8]) + struct.pack(">HI", 0, len(data) + 4) + bytes(data[10:])
    with pytest.raises(TemplateFormatError) as caught:
        decode(long_form)
    assert caught.value.field == "extended record length"


def _corrupt(offset: int, value: bytes) -> bytes:
    data = _bytes()
    data[offset : offset + len(value)] = value
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "field", "offset"),
    [
        (_corrupt(0, b"FMX"), "magic", 0),
        (_corrupt(8, b"\x00\x99"), "record length", 8),
        (_corrupt(25, b"\x01"), "reserved", 25),
        (_corrupt(24, b"\x00"), "number of finger views", 24),
        (_corrupt(26, b"\x0b"), "finger position", 26),
        (_corrupt(27, b"\x04"), "impression type", 27),
        (_corrupt(28, b"\x65"), "finger quality", 28),
        (_corrupt(30, b"\xc0"), "minutia type", 30),
        (_corrupt(30, b"\x81\x2c"), "minutia x/y", 30),
        (_corrupt(32, b"\x40"), "minutia y", 32),
        (_corrupt(34, b"\xb4"), "minutia angle", 34),
        (_corrupt(35, b"\x65"), "minutia quality", 35),
        (_corrupt(38, b"\x00\x00"), "extended data type", 38),
        (_corrupt(40, b"\x00\x03"), "extended data block length", 40),
        (_corrupt(40, b"\x00\x09"), "extended data block length", 40),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_malformed_fields_are_rejected_naming_field_and_offset(
    data: bytes, field: str, offset: int
) -> None:
    with pytest.raises(TemplateFormatError) as caught:
        decode(data)
    assert (caught.value.field, caught.value.offset) == (field, offset)


@pytest.mark.parametrize(
    "record",
    [
        _record(),
        _record(AnsiFingerView(1, 0, 0, 0, (AnsiMinutia(1, 0, 0, 180, 0),))),
        _record(AnsiFingerView(1, 0, 4, 0)),
        _record(AnsiFingerView(1, 0, 0, 0, (ONE,)), width=10),
        _record(AnsiFingerView(1, 0, 0, 0, (), (ExtendedDataBlock(0, b""),))),
    ],
    ids=["no views", "angle 180", "impression 4", "minutia outside", "block type 0"],
)
def test_encoding_refuses_out_of_range_fields(record: AnsiMinutiaeRecord) -> None:
    with pytest.raises(TemplateValueError):
        encode(record)


@given(ansi_records)
def test_any_valid_record_survives_encode_then_decode(record: AnsiMinutiaeRecord) -> None:
    data = encode(record)
    assert decode(data) == record
    assert encode(decode(data)) == data


@given(ansi_records, st.data())
def test_every_proper_prefix_of_a_record_is_rejected(
    record: AnsiMinutiaeRecord, data: st.DataObject
) -> None:
    encoded = encode(record)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(TemplateFormatError):
        decode(encoded[:cut])
