"""The byte link under the ZFM protocol: a UART today, USB bulk endpoints later."""

from __future__ import annotations

from typing import Protocol


class ByteTransport(Protocol):
    """A bidirectional byte stream with deadlines.

    Deadlines are absolute :func:`time.monotonic` values. Implementations raise
    :class:`~firmware_bridge.errors.SensorTimeoutError` when a write cannot finish by its deadline
    and :class:`~firmware_bridge.errors.SensorDisconnectedError` when the device has gone.
    """

    @property
    def description(self) -> str:
        """Where the link goes, e.g. the tty path; used in error messages."""
        ...

    def write(self, data: bytes, deadline: float) -> None:
        """Send all of ``data`` by ``deadline``."""
        ...

    def read(self, max_bytes: int, deadline: float) -> bytes:
        """Return 1..max_bytes bytes as soon as any arrive; b"" only once ``deadline`` passed."""
        ...

    def discard_input(self) -> None:
        """Drop whatever has been received and not read yet."""
        ...

    def close(self) -> None:
        """Release the link; safe to call twice."""
        ...
