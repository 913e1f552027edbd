"""Interoperability with an independent implementation: the afis package's template codecs.

afis (MIT, the `bench` extra) has its own ISO/IEC 19794-2 reader and an ISO 2011 writer laid out
for NBIS; these tests run where it is installed (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.minutiae import Minutia, MinutiaKind
from edge.templates import iso19794_2_2011, minutiae_to_iso2005

templates = pytest.importorskip("afis.algorithms.templates", reason="afis is not installed")

MINUTIAE = [
    Minutia(40.0 + 11 * i, 30.0 + 13 * i, (37.0 * i) % 360, MinutiaKind(1 + i % 2), 50 + i)
    for i in range(20)
]


def test_afis_reads_our_iso2005_records_field_for_field() -> None:
    data = minutiae_to_iso2005(MINUTIAE, width=388, height=374, ppi=500, finger_position=7,
                               impression_type=0, quality=66)
    header, rows = templates.decode_iso19794_2(data)
    assert (header.width, header.height, header.finger_position) == (388, 374, 7)
    assert header.resolution_x == 197
    assert len(rows) == len(MINUTIAE)
    ours = sorted((round(m.x), round(m.y)) for m in MINUTIAE)
    theirs = sorted((int(r[0]), int(r[1])) for r in rows)
    assert ours == theirs
    by_position = {(int(r[0]), int(r[1])): r for r in rows}
    for m in MINUTIAE:
        theta = math.degrees(by_position[(round(m.x), round(m.y))][2])
        assert abs((theta - m.angle + 180) % 360 - 180) <= 360 / 256


def test_we_read_the_iso2011_records_afis_writes_for_nbis() -> None:
    header = templates.FingerprintTemplateHeader(
        width=388, height=374, resolution_x=197, resolution_y=197, finger_position=2,
        impression_type=0, image_quality=60,
    )
    rows = np.array([[100, 120, 0.5, 0, 0.8], [200, 220, 2.5, 1, 0.6], [50, 60, 4.0, 0, 0.9]])
    record = iso19794_2_2011.decode(templates.encode_iso19794_2_2011(header, rows))
    (view,) = record.representations
    assert view.finger_position == 2
    assert sorted((m.x, m.y) for m in view.minutiae) == [(50, 60), (100, 120), (200, 220)]
