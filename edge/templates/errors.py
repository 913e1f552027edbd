"""Errors raised by the minutiae template codecs."""

from __future__ import annotations


class TemplateError(Exception):
    """A template could not be read or written."""


class TemplateFormatError(TemplateError):
    """Bytes or text that do not follow the format; says where and which field."""

    def __init__(self, offset: int, field: str, message: str) -> None:
        super().__init__(f"{field} at offset {offset}: {message}")
        self.offset = offset
        self.field = field
        self.message = message


class TemplateValueError(TemplateError):
    """A record that cannot be encoded because a field is out of range."""
