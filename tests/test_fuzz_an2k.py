"""Fuzz targets for the ANSI/NIST-ITL reader and the WSQ decoder: hostile bytes end in the
package's own errors, never another exception, a hang or a huge allocation."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.an2k import transaction as tx
from edge.an2k import wsq
from edge.an2k.errors import An2kError
from edge.an2k.records import text
from edge.templates.ansi378_2004 import AnsiMinutia
from hil.fingers import FingerGenerator

pytest.importorskip("_wsq")

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FINGER = FingerGenerator(seed=6).impression_image(0, 0, 128, 128)
WSQ = wsq.encode(FINGER)
TRANSACTION = tx.write(
    tx.Transaction(
        tx.TransactionInfo("CAR", "D", "O", "T", datetime.date(2026, 11, 28)),
        ({18: text(("DOE", "JOHN"))},),
        (tx.FingerprintImage(13, FINGER, amputations=((5, "UP"),), quality=((2, 3),)),),
        (tx.FingerMinutiae(2, 128, 128, 197, 197, (AnsiMinutia(1, 1, 2, 3, 4),)),),
    )
)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(out)))
        noise = draw(st.binary(min_size=1, max_size=3))
        action = draw(st.sampled_from(["overwrite", "insert", "cut"]))
        if action == "overwrite":
            out[at : at + len(noise)] = noise
        elif action == "insert":
            out[at:at] = noise
        else:
            del out[at : at + len(noise)]
    return bytes(out)


@FUZZ
@given(st.one_of(st.binary(max_size=200), mutated(TRANSACTION)))
def test_fuzz_transaction_reader(data: bytes) -> None:
    try:
        tx.read(data)
    except An2kError:
        return


@FUZZ
@given(st.one_of(st.binary(max_size=100), mutated(WSQ)))
def test_fuzz_wsq_decoder(data: bytes) -> None:
    try:
        image = wsq.decode(data)
    except An2kError:
        return
    assert image.pixels.shape == wsq.frame_size(data)[::-1]
