"""Errors raised while reading or writing ANSI/NIST-ITL transactions and WSQ images."""

from __future__ import annotations


class An2kError(Exception):
    """A transaction or image could not be read or written."""


class An2kFormatError(An2kError):
    """Bytes that do not follow the standard; says where and which field."""

    def __init__(self, offset: int, field: str, message: str) -> None:
        super().__init__(f"{field} at offset {offset}: {message}")
        self.offset = offset
        self.field = field
        self.message = message


class An2kValueError(An2kError):
    """Content that cannot be written because a value is out of range or missing."""
