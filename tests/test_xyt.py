"""NIST .xyt text: MINDTCT's bottom-left origin and opposite direction, strict parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.minutiae import Minutia, MinutiaKind
from edge.templates.errors import TemplateFormatError, TemplateValueError
from edge.templates.xyt import read_xyt, write_xyt

HEIGHT = 400


def test_writer_flips_y_to_bottom_left_and_turns_theta_half_a_turn() -> None:
    m = Minutia(x=12.0, y=30.0, angle=10.0, kind=MinutiaKind.ENDING, quality=77)
    assert write_xyt([m], HEIGHT) == "12 370 190 77\n"


def test_reader_undoes_the_writer_conventions() -> None:
    (m,) = read_xyt("12 370 190 77\n", HEIGHT)
    assert (m.x, m.y, m.angle, m.quality, m.kind) == (12.0, 30.0, 10.0, 77, MinutiaKind.OTHER)


def test_reader_accepts_three_fields_and_blank_lines() -> None:
    (m,) = read_xyt("\n5 5 0\n\n", HEIGHT)
    assert (m.y, m.angle, m.quality) == (395.0, 180.0, 0)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("1 2\n", 1),
        ("1 2 3 4 5\n", 1),
        ("1 2 3 4\n1 2 x 4\n", 2),
        ("1 2 -3 4\n", 1),
        ("1 2 360 4\n", 1),
        ("1 401 3 4\n", 1),
        ("1 0 3 4\n", 1),
        ("1 2 3 101\n", 1),
        ("1 2 3 \u00b2\n", 1),
    ],
)
def test_malformed_lines_are_rejected_naming_the_line(text: str, line: int) -> None:
    with pytest.raises(TemplateFormatError) as caught:
        read_xyt(text, HEIGHT)
    assert caught.value.field == f"line {line}"


def test_writer_refuses_a_minutia_outside_the_image() -> None:
    with pytest.raises(TemplateValueError):
        write_xyt([Minutia(1.0, 400.0, 0.0, MinutiaKind.ENDING, 0)], HEIGHT)


@given(
    st.lists(
        st.builds(
            Minutia,
            x=st.integers(0, 500).map(float),
            y=st.integers(0, HEIGHT - 1).map(float),
            angle=st.integers(0, 359).map(float),
            kind=st.just(MinutiaKind.OTHER),
            quality=st.integers(0, 100),
        ),
        max_size=50,
    )
)
def test_whole_pixel_minutiae_survive_write_then_read(minutiae: list[Minutia]) -> None:
    assert read_xyt(write_xyt(minutiae, HEIGHT), HEIGHT) == minutiae


@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_raises_a_format_error(text: str) -> None:
    try:
        parsed = read_xyt(text, HEIGHT)
    except TemplateFormatError:
        return
    assert all(0 <= m.y < HEIGHT and 0 <= m.angle < 360 for m in parsed)
