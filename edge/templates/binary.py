"""Big-endian cursor and range checks shared by the binary template codecs."""

from __future__ import annotations

import struct

from edge.templates.errors import TemplateFormatError, TemplateValueError


class ByteReader:
    """Reads ``data[offset:end]``; every failure names the absolute offset and the field."""

    def __init__(self, data: bytes, offset: int = 0, end: int | None = None) -> None:
        self.data = data
        self.offset = offset
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.offset

    def take(self, size: int, name: str) -> bytes:
        if size > self.remaining:
            raise TemplateFormatError(
                self.offset, name, f"truncated: need {size} bytes, {self.remaining} left"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def u8(self, name: str) -> int:
        return self.take(1, name)[0]

    def u16(self, name: str) -> int:
        value: int = struct.unpack(">H", self.take(2, name))[0]
        return value

    def u32(self, name: str) -> int:
        value: int = struct.unpack(">I", self.take(4, name))[0]
        return value

    def fail(self, name: str, message: str, size: int) -> TemplateFormatError:
        """Error for the field of ``size`` bytes just read."""
        return TemplateFormatError(self.offset - size, name, message)


def check_range(value: int, maximum: int, name: str, minimum: int = 0) -> None:
    """Refuse to encode a field outside ``minimum..maximum``."""
    if not minimum <= value <= maximum:
        raise TemplateValueError(f"{name} {value} is not {minimum}..{maximum}")
