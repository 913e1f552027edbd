"""Capture ids: UUIDv7 (RFC 9562), time-ordered and monotonic within a process.

Layout (128 bits, big endian): 48-bit unix time in ms | version 7 (4) | rand_a (12) |
variant 0b10 (2) | rand_b (62). The 74 bits of rand_a + rand_b are treated as one number: a
new millisecond gets a fresh random value; another id in the same millisecond (or after the
clock stepped back) gets the previous value plus a random increment (RFC 9562 §6.2 method 2),
so ids sort in creation order and stay unguessable.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

UUID7_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
"""Canonical (lower-case, hyphenated) text form of a UUIDv7; also used by the wire schemas."""

_UUID7_RE = re.compile(UUID7_PATTERN)
_RAND_BITS = 74
_RAND_MAX = (1 << _RAND_BITS) - 1
_TIME_MAX = (1 << 48) - 1
# Bounded so that a burst of ids in one millisecond cannot run out of the 74-bit space.
_INCREMENT_BITS = 32


def _unix_ms() -> int:
    return time.time_ns() // 1_000_000


class Uuid7Generator:
    """Thread-safe UUIDv7 source; ``clock_ms`` returns unix time in milliseconds."""

    def __init__(self, clock_ms: Callable[[], int] = _unix_ms) -> None:
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def new(self) -> uuid.UUID:
        with self._lock:
            now = self._clock_ms()
            if now > self._last_ms:
                ms, rand = now, secrets.randbits(_RAND_BITS)
            else:
                # Same millisecond, or the wall clock stepped back: keep counting from the last id.
                ms = self._last_ms
                rand = self._last_rand + 1 + secrets.randbits(_INCREMENT_BITS)
                if rand > _RAND_MAX:
                    ms, rand = ms + 1, secrets.randbits(_RAND_BITS)
            if ms > _TIME_MAX:
                raise OverflowError("unix time no longer fits the 48-bit UUIDv7 field")
            self._last_ms, self._last_rand = ms, rand
        rand_a = rand >> 62
        rand_b = rand & ((1 << 62) - 1)
        value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
        return uuid.UUID(int=value)


_default = Uuid7Generator()


def new_capture_id() -> str:
    """A fresh capture id in canonical text form."""
    return str(_default.new())


def is_uuid7(text: str) -> bool:
    """True for the canonical lower-case text form of a UUIDv7."""
    return _UUID7_RE.fullmatch(text) is not None


def uuid7_time(capture_id: str) -> datetime:
    """The creation time encoded in a UUIDv7 (ms resolution, UTC); ValueError if not one."""
    if not is_uuid7(capture_id):
        raise ValueError("not a canonical UUIDv7")
    ms = uuid.UUID(capture_id).int >> 80
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
