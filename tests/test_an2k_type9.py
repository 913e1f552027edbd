"""Type-9 standard-format minutiae (fields 9.005-9.012, FMT "S") beside the INCITS 378 block:
written, read back exactly, checked strictly, read by a third-party parser."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.an2k import booking
from edge.an2k import transaction as tx
from edge.an2k.errors import An2kError, An2kFormatError, An2kValueError
from edge.an2k.records import decode_record
from edge.templates import ansi378_2004
from edge.templates.ansi378_2004 import AnsiMinutia

INFO = tx.TransactionInfo(
    "CAR", "WVIAFIS0Z", "NY0303000", "KIOSK07-0001", datetime.date(2026, 11, 28)
)
# 300 x 400 pixels at 197 pixels per cm: 1523 x 2030 in 0.01 mm
WIDTH, HEIGHT, PER_CM = 300, 400, 197
EXTENT_X, EXTENT_Y = 1523, 2030

STANDARD = tx.StandardMinutiae(
    system="KIOSK-EDGE",
    method="A",
    subsystem="K7",
    pattern=(("T", "RS"), ("T", "UN"), ("U", "LOOPISH")),
    cores=((700, 1200),),
    deltas=((300, 500), (1100, 480)),
    ridge_counts=True,
    minutiae=(
        tx.StandardMinutia(10, 2029, 180, 2, "A", ((2, 5), (3, 11))),
        tx.StandardMinutia(1522, 0, 359, 63, "B", ((1, 5),)),
        tx.StandardMinutia(800, 900, 0, 1, "C"),
        tx.StandardMinutia(801, 901, 90, 0, "D"),
    ),
)
VIEW = tx.FingerMinutiae(
    finger_position=2,
    width=WIDTH,
    height=HEIGHT,
    x_resolution=PER_CM,
    y_resolution=PER_CM,
    minutiae=(AnsiMinutia(1, 10, 20, 45, 60),),
    standard=STANDARD,
)


def transaction(*views: tx.FingerMinutiae) -> tx.Transaction:
    return tx.Transaction(INFO, minutiae=views)


def type9(data: bytes) -> bytes:
    """The bytes of the first Type-9 record."""
    at = 0
    while True:
        record, end = decode_record(data, at)
        if record.record_type == 9:
            return data[at:end]
        at = end


def test_standard_fields_read_back_field_for_field() -> None:
    assert tx.read(tx.write(transaction(VIEW))).minutiae == (VIEW,)


def test_standard_fields_are_written_in_the_standard_layout() -> None:
    record = type9(tx.write(transaction(VIEW)))
    for expected in (
        b"9.004:S\x1d",
        b"9.005:KIOSK-EDGE\x1fA\x1fK7\x1d",
        b"9.006:02\x1d",
        b"9.007:T\x1fRS\x1eT\x1fUN\x1eU\x1fLOOPISH\x1d",
        b"9.008:07001200\x1d",
        b"9.009:03000500\x1e11000480\x1d",
        b"9.010:4\x1d9.011:1\x1d",
        b"9.012:001\x1f00102029180\x1f02\x1fA\x1f002,05\x1f003,11\x1e002\x1f15220000359\x1f63\x1fB",
        b"\x1e004\x1f08010901090\x1f00\x1fD\x1d9.126:",
    ):
        assert expected in record


def test_without_standard_fields_fmt_is_u_and_9005_to_9012_are_absent() -> None:
    plain = dataclasses.replace(VIEW, standard=None)
    data = tx.write(transaction(plain))
    record = type9(data)
    assert b"9.004:U\x1d" in record and b"9.005:" not in record and b"9.012:" not in record
    assert tx.read(data).minutiae == (plain,)


def test_a_third_party_parser_reads_the_standard_fields() -> None:
    nistitl = pytest.importorskip("nistitl")
    message = nistitl.Message()
    message.parse(tx.write(transaction(VIEW)))
    record = list(message)[1]
    assert record.type == 9
    assert record[4].value == "S"
    assert record[5][0].values == ["KIOSK-EDGE", "A", "K7"]
    assert record[10].value == "4" and record[11].value == "1"
    assert record[12][0].values == ["001", "00102029180", "02", "A", "002,05", "003,11"]
    assert record[12][3].values == ["004", "08010901090", "00", "D"]
    assert record[137][0].values == ["1", "10", "20", "45", "60", "A"]


def test_378_minutiae_convert_to_hundredths_of_mm_from_the_bottom_left_turned_180() -> None:
    view = dataclasses.replace(
        VIEW,
        width=256,
        height=288,
        minutiae=(AnsiMinutia(1, 0, 0, 0, 100), AnsiMinutia(0, 255, 287, 45, 0)),
        standard=None,
    )
    # 288 px at 197 px/cm is 1462 (0.01 mm); y counts up from the bottom edge, as NBIS does
    assert booking.standard_minutiae(view) == tx.StandardMinutiae(
        system="KIOSK-EDGE",
        method="A",
        minutiae=(
            tx.StandardMinutia(x=0, y=1461, theta=180, quality=2, kind="A"),
            tx.StandardMinutia(x=1294, y=4, theta=270, quality=1, kind="D"),
        ),
    )
    with pytest.raises(An2kValueError):
        booking.standard_minutiae(dataclasses.replace(view, x_resolution=0))


def test_a_booking_spec_asks_for_the_standard_fields(tmp_path: Path) -> None:
    template = ansi378_2004.encode(
        ansi378_2004.AnsiMinutiaeRecord(
            width=256,
            height=288,
            x_resolution=PER_CM,
            y_resolution=PER_CM,
            views=(ansi378_2004.AnsiFingerView(2, 0, 0, 80, (AnsiMinutia(2, 30, 40, 10, 50),)),),
        )
    )
    (tmp_path / "index.ansi").write_bytes(template)
    spec = booking.BookingSpec.model_validate(
        {
            "transaction": {"tot": "CAR", "dai": "D", "ori": "O", "tcn": "T"},
            "minutiae": [
                {"finger": 2, "file": "index.ansi", "standard_fields": True},
                {"finger": 7, "file": "index.ansi"},
            ],
        }
    )
    built = booking.build(spec, tmp_path, INFO.date)
    with_fields, without = tx.read(tx.write(built)).minutiae
    assert with_fields.standard == booking.standard_minutiae(without)
    assert with_fields.standard is not None and with_fields.standard.minutiae[0].kind == "B"
    assert without.standard is None


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (b"9.004:S", b"9.004:X", "9.004 FMT"),
        (b"9.004:S", b"9.004:U", "9.005"),
        (b"KIOSK-EDGE\x1fA", b"KIOSK-EDGE\x1fQ", "9.005 OFR"),
        (b"\x1fK7\x1d", b"\x1f\x1f7\x1d", "9.005 OFR"),
        (b"9.006:02", b"9.006:03", "9.006 FGP"),
        (b"T\x1fRS", b"T\x1fZZ", "9.007 FPC"),
        (b"9.008:07001200", b"9.008:0700120x", "9.008 CRP"),
        (b"9.009:03000500", b"9.009:03009999", "9.009 DLT"),
        (b"9.010:4", b"9.010:5", "9.012 MRC"),
        (b"9.011:1", b"9.011:2", "9.011 RDG"),
        (b"9.011:1", b"9.011:0", "9.011 RDG"),
        (b"\x1fA\x1f002,05", b"\x1fX\x1f002,05", "9.012 MRC"),
        (b"\x1f002,05", b"\x1f001,05", "9.012 MRC"),
        (b"\x1f003,11", b"\x1f009,11", "9.012 MRC"),
        (b"\x1f003,11", b"\x1f003;11", "9.012 MRC"),
        (b"00102029180", b"00102030180", "9.012 MRC"),
        (b"15220000359", b"15220000360", "9.012 MRC"),
        (b"\x1f63\x1fB", b"\x1f64\x1fB", "9.012 MRC"),
        (b"001\x1f0010", b"002\x1f0010", "9.012 MRC"),
    ],
)
def test_malformed_standard_fields_are_rejected_naming_the_field(
    old: bytes, new: bytes, field: str
) -> None:
    data = tx.write(transaction(VIEW))
    assert old in data and len(old) == len(new)  # lengths stay right: only the value is wrong
    with pytest.raises(An2kFormatError) as caught:
        tx.read(data.replace(old, new, 1))
    assert caught.value.field.startswith(field)
    assert caught.value.offset > 0


def test_mandatory_standard_fields_are_required_when_fmt_is_s() -> None:
    data = tx.write(transaction(dataclasses.replace(VIEW, standard=None)))
    with pytest.raises(An2kFormatError, match=r"9\.005 OFR"):
        tx.read(data.replace(b"9.004:U", b"9.004:S", 1))


@pytest.mark.parametrize(
    "bad",
    [
        dataclasses.replace(STANDARD, method="X"),
        dataclasses.replace(STANDARD, system=""),
        dataclasses.replace(STANDARD, subsystem="K77"),
        dataclasses.replace(STANDARD, pattern=()),
        dataclasses.replace(STANDARD, pattern=(("T", "LOOPISH"),)),
        dataclasses.replace(STANDARD, cores=((EXTENT_X, 0),)),
        dataclasses.replace(STANDARD, ridge_counts=False),
        dataclasses.replace(STANDARD, minutiae=(tx.StandardMinutia(0, EXTENT_Y, 0, 2, "A"),)),
        dataclasses.replace(STANDARD, minutiae=(tx.StandardMinutia(0, 0, 360, 2, "A"),)),
        dataclasses.replace(STANDARD, minutiae=(tx.StandardMinutia(0, 0, 0, 64, "A"),)),
        dataclasses.replace(STANDARD, minutiae=(tx.StandardMinutia(0, 0, 0, 2, "X"),)),
        dataclasses.replace(STANDARD, minutiae=(tx.StandardMinutia(0, 0, 0, 2, "A", ((1, 3),)),)),
        dataclasses.replace(
            STANDARD, minutiae=(tx.StandardMinutia(0, 0, 0, 2, "A", ((2, 100),)),) * 2
        ),
        dataclasses.replace(STANDARD, minutiae=(tx.StandardMinutia(0, 0, 0, 2, "A"),) * 1000),
    ],
)
def test_writing_refuses_standard_fields_the_format_cannot_hold(
    bad: tx.StandardMinutiae,
) -> None:
    with pytest.raises(An2kValueError):
        tx.write(transaction(dataclasses.replace(VIEW, standard=bad)))


def test_an_unknown_resolution_bounds_positions_by_four_digits_only() -> None:
    view = dataclasses.replace(VIEW, x_resolution=0, y_resolution=0)
    far = dataclasses.replace(STANDARD, minutiae=(tx.StandardMinutia(9999, 9999, 0, 2, "A"),))
    assert (
        tx.read(tx.write(transaction(dataclasses.replace(view, standard=far)))).minutiae[0].standard
        == far
    )


points = st.tuples(st.integers(0, EXTENT_X - 1), st.integers(0, EXTENT_Y - 1))
texts = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)


@st.composite
def standards(draw: st.DrawFn) -> tx.StandardMinutiae:
    count = draw(st.integers(0, 12))
    ridge_counts = draw(st.booleans())
    minutiae = []
    for index in range(1, count + 1):
        x, y = draw(points)
        counts: tuple[tuple[int, int], ...] = ()
        others = [n for n in range(1, count + 1) if n != index]
        if ridge_counts and others:
            pairs = st.tuples(st.sampled_from(others), st.integers(0, 99))
            counts = tuple(draw(st.lists(pairs, max_size=8)))
        minutiae.append(
            tx.StandardMinutia(
                x=x,
                y=y,
                theta=draw(st.integers(0, 359)),
                quality=draw(st.integers(0, 63)),
                kind=draw(st.sampled_from("ABCD")),
                ridge_counts=counts,
            )
        )
    table_class = st.tuples(st.just("T"), st.sampled_from(sorted(tx.PATTERN_TABLE_CODES)))
    return tx.StandardMinutiae(
        system=draw(texts),
        method=draw(st.sampled_from(sorted(tx.READING_METHODS))),
        minutiae=tuple(minutiae),
        subsystem=draw(st.one_of(st.none(), texts.filter(lambda s: len(s) == 2))),
        pattern=tuple(
            draw(
                st.lists(
                    st.one_of(table_class, st.tuples(st.just("U"), texts)), min_size=1, max_size=3
                )
            )
        ),
        cores=tuple(draw(st.lists(points, max_size=2))),
        deltas=tuple(draw(st.lists(points, max_size=2))),
        ridge_counts=ridge_counts,
    )


@settings(max_examples=60, deadline=None)
@given(standards(), st.integers(0, 10))
def test_any_standard_minutiae_survive_write_then_read(
    standard: tx.StandardMinutiae, finger: int
) -> None:
    view = dataclasses.replace(VIEW, finger_position=finger, standard=standard)
    assert tx.read(tx.write(transaction(view))).minutiae == (view,)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(out)))
        noise = draw(st.binary(min_size=1, max_size=3))
        out[at : at + len(noise)] = noise
    return bytes(out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(tx.write(transaction(VIEW))))
def test_fuzz_standard_fields_end_in_the_packages_own_errors(data: bytes) -> None:
    try:
        tx.read(data)
    except An2kError:
        return


@pytest.mark.parametrize("count", [b" ", b"x", b"-"])
def test_a_record_count_that_is_not_a_number_is_a_format_error(count: bytes) -> None:
    # Found by the fuzz test above: int() of the count escaped as a bare ValueError.
    data = tx.write(transaction(VIEW))
    cnt = b"1.003:1\x1f1\x1e"
    assert cnt in data
    with pytest.raises(An2kFormatError, match=r"1\.003 CNT"):
        tx.read(data.replace(cnt, b"1.003:1\x1f" + count + b"\x1e", 1))


@st.composite
def views(draw: st.DrawFn) -> tx.FingerMinutiae:
    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    minutia = st.builds(
        AnsiMinutia,
        kind=st.integers(0, 2),
        x=st.integers(0, width - 1),
        y=st.integers(0, height - 1),
        angle=st.integers(0, 179),
        quality=st.integers(0, 100),
    )
    return dataclasses.replace(
        VIEW,
        width=width,
        height=height,
        x_resolution=draw(st.integers(40, 500)),  # 102..1270 ppi
        y_resolution=draw(st.integers(40, 500)),
        minutiae=tuple(draw(st.lists(minutia, max_size=20))),
        standard=None,
    )


@settings(max_examples=60, deadline=None)
@given(views())
def test_converted_378_minutiae_always_fit_the_standard_fields(view: tx.FingerMinutiae) -> None:
    standard = booking.standard_minutiae(view)
    with_fields = dataclasses.replace(view, standard=standard)
    assert tx.read(tx.write(transaction(with_fields))).minutiae == (with_fields,)
    assert [m.theta // 2 for m in standard.minutiae] == [
        (m.angle + 90) % 180 for m in view.minutiae
    ]
