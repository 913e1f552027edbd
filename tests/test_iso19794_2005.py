"""ISO/IEC 19794-2:2005 records: byte-exact round trips and strict rejection of bad input."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.minutiae import Minutia, MinutiaKind
from edge.templates import iso2005_minutiae, minutiae_to_iso2005
from edge.templates.conversion import angle_to_byte, byte_to_angle
from edge.templates.errors import TemplateFormatError, TemplateValueError
from edge.templates.iso19794_2_2005 import (
    ExtendedDataBlock,
    FingerMinutiaeRecord,
    FingerView,
    IsoMinutia,
    decode,
    encode,
)

FIXTURES = Path(__file__).parent / "fixtures" / "iso19794_2_2005"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
VALID = sorted(FIXTURES.glob("fvc2002_*.iso"))
INVALID = sorted(FIXTURES.glob("invalid_*.iso"))


def _record(minutiae: tuple[IsoMinutia, ...]) -> bytes:
    view = FingerView(
        finger_position=3, view_number=0, impression_type=0, finger_quality=60, minutiae=minutiae
    )
    return encode(FingerMinutiaeRecord(300, 400, 197, 197, (view,)))


ONE_MINUTIA = (IsoMinutia(kind=1, x=10, y=20, angle=64, quality=50),)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_committed_corpus_records_round_trip_byte_for_byte(path: Path) -> None:
    data = path.read_bytes()
    record = decode(data)
    assert record.width == 300 and record.height == 400 and record.x_resolution == 197
    assert len(record.views) == 1 and record.views[0].minutiae
    assert encode(record) == data


def test_every_corpus_record_round_trips_byte_for_byte() -> None:
    files = sorted((CORPUS / "fvc2002").glob("*/*.iso"))
    if not files:
        pytest.skip(f"development corpus not present at {CORPUS}")
    for path in files:
        assert encode(decode(path.read_bytes())) == path.read_bytes(), path


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_truncated_records_are_rejected_naming_the_length(path: Path) -> None:
    with pytest.raises(TemplateFormatError) as caught:
        decode(path.read_bytes())
    assert caught.value.field == "record length" and caught.value.offset == 8


def test_corpus_invalid_records_are_rejected() -> None:
    files = sorted((CORPUS / "invalid").glob("*.iso"))
    if not files:
        pytest.skip(f"development corpus not present at {CORPUS}")
    for path in files:
        with pytest.raises(TemplateFormatError):
            decode(path.read_bytes())


def test_decoded_fixture_fields_match_the_bytes() -> None:
    data = (FIXTURES / "fvc2002_db1_101_1.iso").read_bytes()
    first = decode(data).views[0].minutiae[0]
    type_x, y = struct.unpack(">HH", data[28:32])
    assert (first.kind, first.x, first.y) == (type_x >> 14, type_x & 0x3FFF, y)
    assert (first.angle, first.quality) == (data[32], data[33])


def _corrupt(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: _corrupt(d, 0, b"XMR\x00"), "magic"),
        (lambda d: _corrupt(d, 4, b"030\x00"), "version"),
        (lambda d: _corrupt(d, 8, struct.pack(">I", len(d) + 1)), "record length"),
        (lambda d: _corrupt(d, 8, struct.pack(">I", len(d) + 1)) + b"\x00", "record"),
        (lambda d: _corrupt(d, 22, b"\x00"), "number of finger views"),
        (lambda d: _corrupt(d, 23, b"\x01"), "reserved"),
        (lambda d: _corrupt(d, 24, b"\x0b"), "finger position"),
        (lambda d: _corrupt(d, 25, b"\x05"), "impression type"),
        (lambda d: _corrupt(d, 26, b"\x65"), "finger quality"),
        (lambda d: _corrupt(d, 28, b"\xc0"), "minutia type"),
        (lambda d: _corrupt(d, 30, b"\x40"), "minutia y"),
        (lambda d: _corrupt(d, 28, struct.pack(">H", 1 << 14 | 300)), "minutia x/y"),
        (lambda d: _corrupt(d, 30, struct.pack(">H", 400)), "minutia x/y"),
        (lambda d: _corrupt(d, 33, b"\x65"), "minutia quality"),
        (lambda d: _corrupt(d, 34, b"\x00\x09"), "extended data length"),
    ],
)
def test_malformed_fields_are_rejected_with_the_field_named(mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TemplateFormatError) as caught:
        decode(mutate(_record(ONE_MINUTIA)))
    assert caught.value.field == field


def test_minutiae_count_larger_than_the_record_is_truncation_not_a_crash() -> None:
    data = _corrupt(_record(ONE_MINUTIA), 27, b"\xff")
    with pytest.raises(TemplateFormatError) as caught:
        decode(data)
    assert "truncated" in str(caught.value)


def test_extended_data_blocks_round_trip_as_raw_bytes() -> None:
    view = FingerView(
        3, 1, 1, 80, ONE_MINUTIA, (ExtendedDataBlock(1, b"\x01\x02\x03"), ExtendedDataBlock(3, b""))
    )
    record = FingerMinutiaeRecord(
        300,
        400,
        197,
        197,
        (view, FingerView(4, 0, 0, 0)),
        equipment_compliance=8,
        equipment_id=0x123,
    )
    data = encode(record)
    assert decode(data) == record
    assert data[34:36] == struct.pack(">H", 4 + 3 + 4)  # block lengths exclude their headers


def test_extended_block_running_past_its_area_is_rejected() -> None:
    view = FingerView(3, 0, 0, 0, (), (ExtendedDataBlock(1, b"\x01\x02"),))
    data = bytearray(encode(FingerMinutiaeRecord(300, 400, 197, 197, (view,))))
    data[32:34] = struct.pack(">H", 3)  # block claims 3 data bytes, area holds 2
    with pytest.raises(TemplateFormatError) as caught:
        decode(bytes(data))
    assert caught.value.field == "extended data block length"


@pytest.mark.parametrize(
    "record",
    [
        FingerMinutiaeRecord(300, 400, 197, 197, ()),
        FingerMinutiaeRecord(300, 400, 197, 197, (FingerView(11, 0, 0, 0),)),
        FingerMinutiaeRecord(300, 400, 197, 197, (FingerView(1, 0, 9, 0),)),
        FingerMinutiaeRecord(10, 10, 197, 197, (FingerView(1, 0, 0, 0, ONE_MINUTIA),)),
        FingerMinutiaeRecord(
            300, 400, 197, 197, (FingerView(1, 0, 0, 0, (ONE_MINUTIA[0],) * 256),)
        ),
    ],
    ids=["no views", "finger position", "impression type", "minutia outside", "256 minutiae"],
)
def test_encoding_refuses_out_of_range_fields(record: FingerMinutiaeRecord) -> None:
    with pytest.raises(TemplateValueError):
        encode(record)


minutiae_strategy = st.builds(
    IsoMinutia,
    kind=st.integers(0, 2),
    x=st.integers(0, 299),
    y=st.integers(0, 399),
    angle=st.integers(0, 255),
    quality=st.integers(0, 100),
)
views_strategy = st.builds(
    FingerView,
    finger_position=st.integers(0, 10),
    view_number=st.integers(0, 15),
    impression_type=st.sampled_from([0, 1, 2, 3, 8]),
    finger_quality=st.integers(0, 100),
    minutiae=st.lists(minutiae_strategy, max_size=30).map(tuple),
    extended_data=st.lists(
        st.builds(ExtendedDataBlock, type_id=st.integers(1, 0xFFFF), data=st.binary(max_size=20)),
        max_size=3,
    ).map(tuple),
)
records_strategy = st.builds(
    FingerMinutiaeRecord,
    width=st.just(300),
    height=st.just(400),
    x_resolution=st.integers(0, 0xFFFF),
    y_resolution=st.integers(0, 0xFFFF),
    views=st.lists(views_strategy, min_size=1, max_size=4).map(tuple),
    equipment_compliance=st.integers(0, 15),
    equipment_id=st.integers(0, 0xFFF),
)


@given(records_strategy)
def test_any_valid_record_survives_encode_then_decode(record: FingerMinutiaeRecord) -> None:
    data = encode(record)
    assert decode(data) == record
    assert encode(decode(data)) == data


@given(records_strategy, st.data())
def test_every_proper_prefix_of_a_record_is_rejected(
    record: FingerMinutiaeRecord, data: st.DataObject
) -> None:
    encoded = encode(record)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(TemplateFormatError):
        decode(encoded[:cut])


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_exactly_or_raise_a_format_error(data: bytes) -> None:
    try:
        record = decode(data)
    except TemplateFormatError:
        return
    assert encode(record) == data  # whatever is accepted is understood completely


@given(st.binary(min_size=1, max_size=40), st.data())
def test_a_record_with_bytes_overwritten_decodes_exactly_or_raises_a_format_error(
    noise: bytes, data: st.DataObject
) -> None:
    encoded = (FIXTURES / "fvc2002_db4_103_1.iso").read_bytes()
    at = data.draw(st.integers(0, len(encoded) - 1))
    mutated = (encoded[:at] + noise + encoded[at + len(noise) :])[: len(encoded)]
    try:
        record = decode(mutated)
    except TemplateFormatError:
        return
    assert encode(record) == mutated


@pytest.mark.parametrize(
    ("degrees", "units"), [(0.0, 0), (90.0, 64), (180.0, 128), (359.0, 255), (359.9, 0), (1.4, 1)]
)
def test_angle_byte_is_rounded_256ths_of_a_turn_wrapping_at_360(degrees: float, units: int) -> None:
    assert angle_to_byte(degrees) == units
    assert byte_to_angle(64) == 90.0


def test_daemon_helpers_round_trip_minutiae_to_whole_pixels_and_angle_units() -> None:
    found = [
        Minutia(x=10.4, y=20.6, angle=45.0, kind=MinutiaKind.ENDING, quality=90),
        Minutia(x=100.0, y=300.0, angle=300.0, kind=MinutiaKind.BIFURCATION, quality=40),
    ]
    data = minutiae_to_iso2005(
        found, 300, 400, 500.0, finger_position=2, impression_type=0, quality=70
    )
    record, views = iso2005_minutiae(data)
    assert record.x_resolution == record.y_resolution == 197
    assert (record.views[0].finger_position, record.views[0].finger_quality) == (2, 70)
    assert views[0][0] == Minutia(x=10.0, y=21.0, angle=45.0, kind=MinutiaKind.ENDING, quality=90)
    assert views[0][1].kind is MinutiaKind.BIFURCATION
    assert abs(views[0][1].angle - 300.0) <= 360 / 512


def test_daemon_helper_refuses_a_minutia_outside_the_image() -> None:
    outside = Minutia(x=300.2, y=5.0, angle=0.0, kind=MinutiaKind.ENDING, quality=50)
    with pytest.raises(TemplateValueError):
        minutiae_to_iso2005([outside], 300, 400, 500.0, 1, 0, 50)
