"""Capture ids are UUIDv7: right bits, time-ordered, monotonic, unique."""

from __future__ import annotations

import itertools
import secrets
import threading
import uuid
from datetime import UTC, datetime

import pytest

from edge.ids import Uuid7Generator, is_uuid7, new_capture_id, uuid7_time

FIXED_MS = 1_750_000_000_123


def test_a_capture_id_has_version_7_and_the_rfc_variant() -> None:
    value = uuid.UUID(new_capture_id())
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_a_capture_id_is_canonical_lower_case_text() -> None:
    text = new_capture_id()
    assert is_uuid7(text)
    assert text == str(uuid.UUID(text))


def test_the_timestamp_field_holds_the_clock_in_milliseconds() -> None:
    generated = Uuid7Generator(clock_ms=lambda: FIXED_MS).new()
    assert generated.int >> 80 == FIXED_MS
    assert uuid7_time(str(generated)) == datetime.fromtimestamp(FIXED_MS / 1000, tz=UTC)


def test_ids_sort_in_creation_order_as_text_and_as_numbers() -> None:
    made = [new_capture_id() for _ in range(5000)]
    assert sorted(made) == made
    assert sorted(made, key=lambda t: uuid.UUID(t).int) == made


def test_many_ids_in_the_same_millisecond_are_still_increasing() -> None:
    generator = Uuid7Generator(clock_ms=lambda: FIXED_MS)
    made = [generator.new() for _ in range(1000)]
    assert all(a.int < b.int for a, b in itertools.pairwise(made))
    assert {m.int >> 80 for m in made} == {FIXED_MS}
    assert all(m.version == 7 and m.variant == uuid.RFC_4122 for m in made)


def test_a_clock_stepping_back_does_not_break_the_order() -> None:
    times = iter([FIXED_MS, FIXED_MS - 5_000, FIXED_MS - 1])
    generator = Uuid7Generator(clock_ms=lambda: next(times))
    made = [generator.new() for _ in range(3)]
    assert made[0].int < made[1].int < made[2].int


def test_exhausting_the_random_space_of_a_millisecond_moves_to_the_next_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(secrets, "randbits", lambda bits: (1 << bits) - 1)
    generator = Uuid7Generator(clock_ms=lambda: FIXED_MS)
    first, second = generator.new(), generator.new()
    assert first.int >> 80 == FIXED_MS
    assert second.int >> 80 == FIXED_MS + 1
    assert first.int < second.int
    assert second.version == 7 and second.variant == uuid.RFC_4122


def test_ids_made_on_many_threads_are_all_distinct() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        into.extend(new_capture_id() for _ in range(2000))

    threads = [threading.Thread(target=make, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for r in results for i in r]
    assert len(set(everything)) == len(everything) == 8000
    assert all(r == sorted(r) for r in results)


@pytest.mark.parametrize(
    "text",
    [
        str(uuid.uuid4()),
        new_capture_id().upper(),
        new_capture_id().replace("-", ""),
        "",
        "01a22295-82c2-7c4a-c669-361c672cd6eb",  # variant bits 110
    ],
)
def test_anything_but_a_canonical_uuid7_is_refused(text: str) -> None:
    assert not is_uuid7(text)
    with pytest.raises(ValueError):
        uuid7_time(text)
