"""ANSI/NIST-ITL 1-2011 booking transactions: written, read back, read by a third-party parser."""

from __future__ import annotations

import dataclasses
import datetime
import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.an2k import transaction as tx
from edge.an2k.errors import An2kFormatError, An2kValueError
from edge.an2k.records import Field, TaggedRecord, decode_record, encode_record, text
from edge.templates.ansi378_2004 import AnsiMinutia
from hil.fingers import FingerGenerator

pytest.importorskip("_wsq")

DAY = datetime.date(2026, 11, 28)
INFO = tx.TransactionInfo(
    tot="CAR",
    dai="WVIAFIS0Z",
    ori="NY0303000",
    tcn="KIOSK07-0001",
    date=DAY,
    priority=2,
    domain=("EBTS", "11.1"),
    gmt=datetime.datetime(2026, 11, 28, 15, 4, 5, tzinfo=datetime.UTC),
)

MINUTIAE = (AnsiMinutia(1, 10, 20, 45, 60), AnsiMinutia(2, 30, 40, 179, 0))


@pytest.fixture(scope="module")
def booking() -> tx.Transaction:
    generator = FingerGenerator(seed=9)
    finger = generator.impression_image(0, 0)
    slap = np.hstack([generator.impression_image(i, 0) for i in range(1, 5)])
    return tx.Transaction(
        info=INFO,
        descriptive=({18: text(("DOE", "JOHN")), 22: text("19800101"), 24: text("M")},),
        images=(
            tx.FingerprintImage(2, finger, impression_type=1, capture_date=DAY,
                                quality=((2, 3),), device_mode="CONTROLLED"),
            tx.FingerprintImage(
                13, slap, capture_date=DAY,
                quality=((2, 2), (3, 3), (4, 254)),
                amputations=((5, "XX"),),
                segments=tuple(tx.Segment(p, 256 * i + 1, 256 * i + 250, 5, 280)
                               for i, p in enumerate((2, 3, 4))),
            ),
        ),
        minutiae=(tx.FingerMinutiae(2, 256, 288, 197, 197, MINUTIAE, finger_quality=70,
                                    product_id=0x00FF0001),),
    )  # fmt: skip


def test_a_booking_reads_back_field_for_field(booking: tx.Transaction) -> None:
    back = tx.read(tx.write(booking))
    assert back.info == booking.info
    assert back.descriptive == booking.descriptive
    assert back.minutiae == booking.minutiae
    for ours, theirs in zip(booking.images, back.images, strict=True):
        assert theirs == dataclasses.replace(ours, source_agency=INFO.ori)  # SRC defaults to ORI
        assert theirs.pixels.shape == ours.pixels.shape
        assert np.abs(theirs.pixels.astype(int) - ours.pixels).mean() < 12


def test_type1_lists_every_record_in_cnt_and_lengths_are_exact(booking: tx.Transaction) -> None:
    data = tx.write(booking)
    first, end = decode_record(data, 0)
    assert data[: data.index(b"\x1d")] == f"1.001:{end}".encode()
    cnt = first.get(3)
    assert cnt is not None and cnt.value == text(
        ("1", "4"), ("2", "1"), ("14", "2"), ("14", "3"), ("9", "4")
    )


def test_a_third_party_parser_reads_what_we_write(booking: tx.Transaction) -> None:
    nistitl = pytest.importorskip("nistitl")
    from PIL import Image

    pytest.importorskip("wsq")  # registers the WSQ codec with Pillow
    message = nistitl.Message()
    message.parse(tx.write(booking))
    records = list(message)
    assert [r.type for r in records] == [1, 2, 14, 14, 9]
    assert message.TOT == "CAR"
    slap = records[3]
    assert slap[13].value == "13" and slap[11].value == "WSQ20"
    assert slap[18][0].values == ["5", "XX"]
    image = Image.open(io.BytesIO(slap[999].value))
    assert image.size == (booking.images[1].pixels.shape[1], booking.images[1].pixels.shape[0])


def test_we_read_what_a_third_party_writer_produces() -> None:
    nistitl = pytest.importorskip("nistitl")
    from PIL import Image

    pytest.importorskip("wsq")
    finger = FingerGenerator(seed=4).impression_image(0, 0)
    buffer = io.BytesIO()
    Image.fromarray(finger).save(buffer, format="WSQ")
    message = nistitl.Message()
    message.TOT = "CAR"
    for name, value in [("VER", "0500"), ("DAT", "20261128"), ("DAI", "D1"), ("ORI", "O1"),
                        ("TCN", "T1")]:  # fmt: skip
        setattr(message[0], name, value)
    descriptive = nistitl.AsciiRecord(2)
    descriptive.IDC = 1
    descriptive += nistitl.Field(2, 18, "DOE,JOHN")
    message += descriptive
    image = nistitl.AsciiRecord(14)
    image.IDC = 2
    values = ["1", "O1", "20261128", "256", "288", "1", "500", "500", "WSQ20", "8", "7"]
    for number, value in enumerate(values, start=3):
        image += nistitl.Field(14, number, value)
    image += nistitl.BinaryField(14, 999, buffer.getvalue())
    message += image
    back = tx.read(message.NIST)
    assert (back.info.tot, back.info.tcn, back.info.date) == ("CAR", "T1", DAY)
    assert back.descriptive == ({18: text("DOE,JOHN")},)
    assert back.images[0].finger_position == 7 and back.images[0].impression_type == 1
    assert back.images[0].pixels.shape == (288, 256)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (b"1.002:0500", b"1.002:0400", "1.002 VER"),
        (b"14.011:WSQ20", b"14.011:WSQ99", "14.011 CGA"),
        (b"14.013:13", b"14.013:16", "14.013 FGP"),
        (b"14.003:1", b"14.003:7", "14.003 IMP"),
        (b"14.018:5\x1fXX", b"14.018:5\x1fZZ", "Type-14"),
        (b"9.137:1\x1f", b"9.137:7\x1f", "9.137 FMD"),
        (b"1.003:1\x1f4", b"1.003:1\x1f5", "1.003 CNT"),
    ],
)
def test_bad_codes_and_counts_are_rejected_naming_the_field(
    booking: tx.Transaction, old: bytes, new: bytes, field: str
) -> None:
    data = tx.write(booking)
    assert old in data and len(old) == len(new)  # lengths stay right: only the value is wrong
    with pytest.raises(An2kFormatError) as caught:
        tx.read(data.replace(old, new, 1))
    assert caught.value.field.startswith(field)


def test_truncated_transactions_are_rejected(booking: tx.Transaction) -> None:
    data = tx.write(booking)
    for cut in (1, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(An2kFormatError):
            tx.read(data[:cut])


def test_trailing_bytes_and_unsupported_record_types_are_rejected(booking: tx.Transaction) -> None:
    data = tx.write(booking)
    with pytest.raises(An2kFormatError, match="bytes after"):
        tx.read(data + b"x")
    unknown = encode_record(TaggedRecord(10, (Field(2, text("9")),)))
    first, end = decode_record(data, 0)
    cnt = first.get(3)
    assert cnt is not None and not isinstance(cnt.value, bytes)
    fields = tuple(
        Field(3, ((cnt.value[0][0], "5"), *cnt.value[1:], ("10", "9"))) if f.number == 3 else f
        for f in first.fields
    )
    with pytest.raises(An2kFormatError, match="not supported"):
        tx.read(encode_record(TaggedRecord(1, fields)) + data[end:] + unknown)


def test_writing_refuses_content_the_standard_cannot_hold(booking: tx.Transaction) -> None:
    image = booking.images[0]
    for bad in (
        dataclasses.replace(image, finger_position=16),
        dataclasses.replace(image, amputations=((2, "ZZ"),)),
        dataclasses.replace(image, quality=((3, 3),)),
        dataclasses.replace(image, segments=(tx.Segment(2, 0, 10, 0, 10),)),
        dataclasses.replace(image, device_mode="SOMETIMES"),
    ):
        with pytest.raises(An2kValueError):
            tx.write(dataclasses.replace(booking, images=(bad,)))
    with pytest.raises(An2kValueError):
        tx.write(dataclasses.replace(booking, descriptive=({2: text("x")},)))
    with pytest.raises(An2kValueError):
        tx.write(dataclasses.replace(booking, descriptive=({18: text("a\x1db")},)))


items = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"),
    min_size=0,
    max_size=8,
)
values = st.lists(st.lists(items, min_size=1, max_size=3).map(tuple), min_size=1, max_size=3).map(
    tuple
)


@given(
    st.integers(1, 99),
    st.dictionaries(st.integers(2, 998), values, min_size=1, max_size=6),
    st.one_of(st.none(), st.binary(max_size=40)),
)
def test_any_tagged_record_survives_encode_then_decode(
    record_type: int, fields: dict[int, tuple[tuple[str, ...], ...]], binary: bytes | None
) -> None:
    body = [Field(n, fields[n]) for n in sorted(fields)]
    if binary is not None:
        body.append(Field(999, binary))
    record = TaggedRecord(record_type, tuple(body))
    data = encode_record(record)
    assert decode_record(data, 0) == (record, len(data))
