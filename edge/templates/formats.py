"""The template formats by name, and telling them apart from their bytes."""

from __future__ import annotations

import enum
import struct

from edge.templates import ansi378_2004, iso19794_2_2005, iso19794_2_2011
from edge.templates.errors import TemplateFormatError


class TemplateFormat(enum.StrEnum):
    ISO2005 = "iso2005"  # ISO/IEC 19794-2:2005
    ISO2011 = "iso2011"  # ISO/IEC 19794-2:2011
    ANSI378 = "ansi378"  # ANSI INCITS 378-2004
    XYT = "xyt"  # NIST MINDTCT text


_XYT_CHARACTERS = frozenset(b"0123456789 \t\r\n")


def detect_format(data: bytes) -> TemplateFormat:
    """Which format ``data`` is in, judged from its header alone (the decoder still validates).

    ISO 2005 and ANSI 378 share the magic and version; the length field tells them apart:
    ISO 2005 stores 4 bytes, ANSI 378 stores 2 (or 0 then 4), and only one reading can equal
    the number of bytes present.
    """
    if data.startswith(iso19794_2_2011.MAGIC):
        return TemplateFormat.ISO2011
    if data.startswith(iso19794_2_2005.MAGIC + iso19794_2_2005.VERSION):
        if len(data) >= 12 and struct.unpack(">I", data[8:12])[0] == len(data):
            return TemplateFormat.ISO2005
        if ansi378_2004.record_length(data) == len(data):
            return TemplateFormat.ANSI378
        raise TemplateFormatError(
            8, "record length", "matches neither an ISO 2005 nor an ANSI 378 record this long"
        )
    if data and set(data) <= _XYT_CHARACTERS:
        return TemplateFormat.XYT
    raise TemplateFormatError(0, "magic", "not a minutiae template this program knows")
