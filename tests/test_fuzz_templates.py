"""Fuzz targets: every template decoder given hostile bytes either returns a record it can
re-encode exactly or raises its format error; never another exception, a hang or a huge
allocation. Bounded by example count so the normal suite stays fast."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from template_strategies import ansi_records, iso2005_records, iso2011_records

from edge.templates import ansi378_2004, iso19794_2_2005, iso19794_2_2011, xyt
from edge.templates.convert import convert
from edge.templates.errors import TemplateError, TemplateFormatError
from edge.templates.formats import TemplateFormat

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with a few bytes overwritten, inserted or cut."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["overwrite", "insert", "cut"]))
        noise = draw(st.binary(min_size=1, max_size=4))
        if action == "overwrite":
            data[at : at + len(noise)] = noise
        elif action == "insert":
            data[at:at] = noise
        else:
            del data[at : at + len(noise)]
    return bytes(data)


ansi_bytes = ansi_records.map(ansi378_2004.encode)
iso2011_bytes = iso2011_records().map(iso19794_2_2011.encode)
iso2005_bytes = iso2005_records.map(iso19794_2_2005.encode)


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated(ansi_bytes)))
def test_fuzz_ansi378_decoder(data: bytes) -> None:
    try:
        record = ansi378_2004.decode(data)
    except TemplateFormatError:
        return
    assert ansi378_2004.encode(record) == data


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated(iso2011_bytes)))
def test_fuzz_iso2011_decoder(data: bytes) -> None:
    try:
        record = iso19794_2_2011.decode(data)
    except TemplateFormatError:
        return
    assert iso19794_2_2011.encode(record) == data


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated(iso2005_bytes)))
def test_fuzz_iso2005_decoder(data: bytes) -> None:
    try:
        record = iso19794_2_2005.decode(data)
    except TemplateFormatError:
        return
    assert iso19794_2_2005.encode(record) == data


@FUZZ
@given(st.text(alphabet="0123456789 -x\n\t\r", max_size=200))
def test_fuzz_xyt_reader(text: str) -> None:
    try:
        minutiae = xyt.read_xyt(text, height=400)
    except TemplateFormatError:
        return
    assert xyt.read_xyt(xyt.write_xyt(minutiae, 400), 400) == minutiae


@FUZZ
@given(
    st.one_of(mutated(ansi_bytes), mutated(iso2011_bytes), mutated(iso2005_bytes)),
    st.sampled_from(list(TemplateFormat)),
)
def test_fuzz_conversion_raises_only_template_errors(data: bytes, target: TemplateFormat) -> None:
    try:
        convert(data, target)
    except TemplateError:
        return
