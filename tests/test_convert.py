"""Conversion between the template formats: exact where the formats allow, losses listed."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from template_strategies import ansi_records, iso2011_records

from edge.templates import ansi378_2004, iso19794_2_2005, iso19794_2_2011
from edge.templates.ansi378_2004 import AnsiMinutiaeRecord
from edge.templates.convert import XytGeometry, ansi_angle, convert, iso_angle
from edge.templates.errors import TemplateFormatError, TemplateValueError
from edge.templates.formats import TemplateFormat, detect_format
from edge.templates.iso19794_2_2005 import ExtendedDataBlock, FingerMinutiaeRecord, FingerView
from edge.templates.iso19794_2_2011 import Iso2011Record

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "iso19794_2_2005").glob("fvc2002_*.iso"))
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "fvc2002"
ISO, ANSI, ISO11, XYT = (
    TemplateFormat.ISO2005,
    TemplateFormat.ANSI378,
    TemplateFormat.ISO2011,
    TemplateFormat.XYT,
)


def test_every_ansi_angle_survives_a_trip_through_iso_units() -> None:
    for units in range(180):
        assert ansi_angle(Fraction(iso_angle(Fraction(units * 2)) * 360, 256)) == units


def test_angles_round_half_up_and_wrap() -> None:
    assert iso_angle(Fraction(359)) == 255 and iso_angle(Fraction(3599, 10)) == 0
    assert iso_angle(Fraction(45, 2)) == 16  # 22.5 degrees is exactly 16 units
    assert ansi_angle(Fraction(45)) == 23  # 22.5 units rounds up
    assert ansi_angle(Fraction(359)) == 0


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_third_party_iso2005_records_are_detected_and_survive_iso2011_byte_for_byte(
    path: Path,
) -> None:
    data = path.read_bytes()
    assert detect_format(data) is ISO
    there = convert(data, ISO11)
    assert detect_format(there.data) is ISO11 and there.losses == ()
    assert convert(there.data, ISO).data == data


def test_every_corpus_record_survives_iso2011_and_ansi_within_the_angle_unit() -> None:
    files = sorted(CORPUS.glob("*/*.iso"))
    if not files:
        pytest.skip(f"development corpus not present at {CORPUS}")
    for path in files:
        data = path.read_bytes()
        assert convert(convert(data, ISO11).data, ISO).data == data, path
        back = iso19794_2_2005.decode(convert(convert(data, ANSI).data, ISO).data)
        original = iso19794_2_2005.decode(data)
        for m, n in zip(original.views[0].minutiae, back.views[0].minutiae, strict=True):
            assert (m.kind, m.x, m.y, m.quality) == (n.kind, n.x, n.y, n.quality)
            assert min((m.angle - n.angle) % 256, (n.angle - m.angle) % 256) <= 1


def test_iso_to_ansi_lists_the_angle_rounding_and_the_dropped_core_block() -> None:
    view = FingerView(
        1, 0, 0, 50,
        (iso19794_2_2005.IsoMinutia(1, 5, 5, 1, 30),),
        (ExtendedDataBlock(1, b"\x00"), ExtendedDataBlock(2, b"\x00\x00")),
    )  # fmt: skip
    data = iso19794_2_2005.encode(FingerMinutiaeRecord(100, 100, 197, 197, (view,)))
    result = convert(data, ANSI)
    record = ansi378_2004.decode(result.data)
    assert record.views[0].minutiae[0].angle == 1  # 1.40625 degrees -> 2 degrees
    assert [b.type_id for b in record.views[0].extended_data] == [1]
    assert any("2-degree" in loss for loss in result.losses)
    assert any("core/delta" in loss for loss in result.losses)


def test_quality_zero_means_not_reported_in_the_older_formats_and_254_in_2011() -> None:
    view = FingerView(1, 0, 0, 50, (iso19794_2_2005.IsoMinutia(1, 5, 5, 1, 0),))
    data = iso19794_2_2005.encode(FingerMinutiaeRecord(100, 100, 197, 197, (view,)))
    rep = iso19794_2_2011.decode(convert(data, ISO11).data).representations[0]
    assert rep.minutiae[0].quality == 254 and rep.minutia_size == 5
    lowest = dataclasses.replace(rep, minutiae=(dataclasses.replace(rep.minutiae[0], quality=0),),
                                 minutia_size=6)  # fmt: skip
    result = convert(iso19794_2_2011.encode(Iso2011Record((lowest,))), ISO)
    assert iso19794_2_2005.decode(result.data).views[0].minutiae[0].quality == 1
    assert any("quality 0" in loss for loss in result.losses)


def test_views_of_different_sizes_cannot_become_a_one_size_record() -> None:
    rep = iso19794_2_2011.Representation(1, 100, 100, 197, 197)
    record = Iso2011Record((rep, dataclasses.replace(rep, finger_position=2, width=120)))
    with pytest.raises(TemplateValueError, match="one image size"):
        convert(iso19794_2_2011.encode(record), ISO)


def test_contactless_impressions_map_between_ansi_and_2011_and_refuse_iso2005() -> None:
    view = ansi378_2004.AnsiFingerView(1, 0, 9, 50)
    data = ansi378_2004.encode(AnsiMinutiaeRecord(100, 100, 197, 197, (view,)))
    rep = iso19794_2_2011.decode(convert(data, ISO11).data).representations[0]
    assert rep.impression_type == 24
    assert convert(convert(data, ISO11).data, ANSI).data == data
    with pytest.raises(TemplateValueError, match="impression type 24"):
        convert(data, ISO)


def test_xyt_round_trip_keeps_positions_and_whole_degree_angles() -> None:
    data = FIXTURES[0].read_bytes()
    text = convert(data, XYT)
    assert any("minutia type" in loss for loss in text.losses)
    original = iso19794_2_2005.decode(data)
    geometry = XytGeometry(original.width, original.height, ppi=500, finger_position=1)
    back = iso19794_2_2005.decode(convert(text.data, ISO, geometry=geometry).data)
    for m, n in zip(original.views[0].minutiae, back.views[0].minutiae, strict=True):
        assert (m.x, m.y) == (n.x, n.y) and n.kind == 0
        assert min((m.angle - n.angle) % 256, (n.angle - m.angle) % 256) <= 1


def test_xyt_input_without_image_size_is_refused() -> None:
    with pytest.raises(TemplateValueError, match="image size"):
        convert(b"10 20 30 40\n", ISO)


def test_unknown_bytes_are_not_a_template() -> None:
    with pytest.raises(TemplateFormatError):
        detect_format(b"\x89PNG\r\n")
    with pytest.raises(TemplateFormatError, match="neither"):
        detect_format(b"FMR\x00 20\x00\x00\x00\x00\x07")


@given(ansi_records)
def test_ansi_records_survive_iso2011_and_back_apart_from_the_cbeff_id(
    record: AnsiMinutiaeRecord,
) -> None:
    record = dataclasses.replace(
        record,
        product_owner=0,
        product_type=0,
        equipment_compliance=0,
        views=tuple(
            dataclasses.replace(
                v,
                extended_data=tuple(
                    b for b in v.extended_data if b.type_id == 1 or b.type_id >= 0x100
                ),
            )
            for v in record.views
        ),
    )
    data = ansi378_2004.encode(record)
    assert detect_format(data) is ANSI
    there = convert(data, ISO11)
    assert convert(there.data, ANSI).data == data


@given(iso2011_records(), st.sampled_from([ISO, ANSI, XYT]))
def test_any_2011_record_converts_to_a_valid_record_or_says_why_not(
    record: Iso2011Record, target: TemplateFormat
) -> None:
    data = iso19794_2_2011.encode(record)
    try:
        result = convert(data, target)
    except TemplateValueError:
        return
    if target is XYT:
        assert len(result.data.splitlines()) == len(record.representations[0].minutiae)
    else:
        assert detect_format(result.data) is target
        convert(result.data, ISO11)  # and it decodes again


def test_a_coordinate_past_14_bits_is_refused_rather_than_corrupting_the_type() -> None:
    view = FingerView(1, 0, 0, 0, (iso19794_2_2005.IsoMinutia(1, 0x4000, 0, 0, 0),))
    with pytest.raises(TemplateValueError, match="minutia x"):
        iso19794_2_2005.encode(FingerMinutiaeRecord(0x5000, 100, 197, 197, (view,)))


def test_truncated_records_are_not_mistaken_for_another_format() -> None:
    invalid = Path(__file__).parent / "fixtures" / "iso19794_2_2005"
    corpus = CORPUS.parent / "invalid"
    paths = sorted(invalid.glob("invalid_*.iso")) + sorted(corpus.glob("*.iso"))
    for path in paths:
        for target in (ISO, ISO11, ANSI, XYT):
            with pytest.raises(TemplateFormatError):
                convert(path.read_bytes(), target)
