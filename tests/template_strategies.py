"""Hypothesis strategies for valid minutiae records of every binary format."""

from __future__ import annotations

from hypothesis import strategies as st

from edge.templates.ansi378_2004 import AnsiFingerView, AnsiMinutia, AnsiMinutiaeRecord
from edge.templates.iso19794_2_2005 import (
    ExtendedDataBlock,
    FingerMinutiaeRecord,
    FingerView,
    IsoMinutia,
)
from edge.templates.iso19794_2_2011 import (
    CaptureDateTime,
    CertificationRecord,
    Iso2011Record,
    QualityRecord,
    Representation,
)

WIDTH, HEIGHT = 300, 400

blocks = st.lists(
    st.builds(ExtendedDataBlock, type_id=st.integers(1, 0xFFFF), data=st.binary(max_size=20)),
    max_size=3,
).map(tuple)

ansi_minutiae = st.builds(
    AnsiMinutia,
    kind=st.integers(0, 2),
    x=st.integers(0, WIDTH - 1),
    y=st.integers(0, HEIGHT - 1),
    angle=st.integers(0, 179),
    quality=st.integers(0, 100),
)
ansi_views = st.builds(
    AnsiFingerView,
    finger_position=st.integers(0, 10),
    view_number=st.integers(0, 15),
    impression_type=st.sampled_from([0, 1, 2, 3, 8, 9]),
    finger_quality=st.integers(0, 100),
    minutiae=st.lists(ansi_minutiae, max_size=30).map(tuple),
    extended_data=blocks,
)
ansi_records = st.builds(
    AnsiMinutiaeRecord,
    width=st.just(WIDTH),
    height=st.just(HEIGHT),
    x_resolution=st.integers(0, 0xFFFF),
    y_resolution=st.integers(0, 0xFFFF),
    views=st.lists(ansi_views, min_size=1, max_size=4).map(tuple),
    product_owner=st.integers(0, 0xFFFF),
    product_type=st.integers(0, 0xFFFF),
    equipment_compliance=st.integers(0, 15),
    equipment_id=st.integers(0, 0xFFF),
)


@st.composite
def datetimes(draw: st.DrawFn) -> CaptureDateTime:
    """Either absent or given down to some unit, never a gap."""
    given = draw(st.integers(0, 7))
    values = [
        draw(st.integers(1, 0xFFFE)),
        draw(st.integers(1, 12)),
        draw(st.integers(1, 31)),
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 999)),
    ]
    absent = [0xFFFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFFFF]
    chosen = values[:given] + absent[given:]
    return CaptureDateTime(*chosen)


iso2011_qualities = st.one_of(st.integers(0, 100), st.sampled_from([254, 255]))


@st.composite
def representations(draw: st.DrawFn, certified: bool) -> Representation:
    size = draw(st.sampled_from([5, 6]))
    width = draw(st.integers(1, 0x3FFF))
    height = draw(st.integers(1, 0x3FFF))
    quality = iso2011_qualities if size == 6 else st.just(254)
    minutiae = draw(
        st.lists(
            st.builds(
                IsoMinutia,
                kind=st.integers(0, 2),
                x=st.integers(0, width - 1),
                y=st.integers(0, height - 1),
                angle=st.integers(0, 255),
                quality=quality,
            ),
            max_size=20,
        )
    )
    certifications = (
        draw(
            st.lists(
                st.builds(CertificationRecord, st.integers(0, 0xFFFF), st.integers(0, 0xFF)),
                max_size=2,
            )
        )
        if certified
        else []
    )
    return Representation(
        finger_position=draw(st.integers(0, 10)),
        width=width,
        height=height,
        x_resolution=draw(st.integers(0, 0xFFFF)),
        y_resolution=draw(st.integers(0, 0xFFFF)),
        impression_type=draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 24, 28, 29])),
        view_number=draw(st.integers(0, 15)),
        minutiae=tuple(minutiae),
        extended_data=draw(blocks),
        capture_datetime=draw(datetimes()),
        device_technology=draw(st.integers(0, 20)),
        device_vendor=draw(st.integers(0, 0xFFFF)),
        device_id=draw(st.integers(0, 0xFFFF)),
        quality_records=tuple(
            draw(
                st.lists(
                    st.builds(
                        QualityRecord,
                        st.one_of(st.integers(0, 100), st.just(255)),
                        st.integers(0, 0xFFFF),
                        st.integers(0, 0xFFFF),
                    ),
                    max_size=3,
                )
            )
        ),
        certifications=tuple(certifications),
        minutia_size=size,
        ending_type=draw(st.integers(0, 1)),
    )


@st.composite
def iso2011_records(draw: st.DrawFn) -> Iso2011Record:
    certified = draw(st.booleans())
    reps = draw(st.lists(representations(certified), min_size=1, max_size=3))
    return Iso2011Record(representations=tuple(reps), certification_flag=certified)


iso2005_records = st.builds(
    FingerMinutiaeRecord,
    width=st.just(WIDTH),
    height=st.just(HEIGHT),
    x_resolution=st.integers(0, 0xFFFF),
    y_resolution=st.integers(0, 0xFFFF),
    views=st.lists(
        st.builds(
            FingerView,
            finger_position=st.integers(0, 10),
            view_number=st.integers(0, 15),
            impression_type=st.sampled_from([0, 1, 2, 3, 8]),
            finger_quality=st.integers(0, 100),
            minutiae=st.lists(
                st.builds(
                    IsoMinutia,
                    kind=st.integers(0, 2),
                    x=st.integers(0, WIDTH - 1),
                    y=st.integers(0, HEIGHT - 1),
                    angle=st.integers(0, 255),
                    quality=st.integers(0, 100),
                ),
                max_size=30,
            ).map(tuple),
            extended_data=blocks,
        ),
        min_size=1,
        max_size=4,
    ).map(tuple),
    equipment_compliance=st.integers(0, 15),
    equipment_id=st.integers(0, 0xFFF),
)
