"""NIST ``.xyt`` minutiae text, as MINDTCT writes by default: ``x y theta quality`` per line.

Convention (NBIS ``lfs2nist_minutia_XYT``): origin bottom-left with ``y_xyt = height - y``
(not ``height - 1 - y``), theta in whole degrees counter-clockwise from east, pointing away
from the ridge ending or bifurcation valley, which is opposite to ISO/ANSI, so
``theta_xyt = (theta_iso + 180) mod 360``. The format carries no minutia type.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge.minutiae import Minutia, MinutiaKind
from edge.templates.errors import TemplateFormatError, TemplateValueError


def write_xyt(minutiae: Iterable[Minutia], height: int) -> str:
    """One line per minutia; coordinates and angle rounded to integers."""
    lines = []
    for m in minutiae:
        x, y = round(m.x), height - round(m.y)
        if x < 0 or not 1 <= y <= height:
            raise TemplateValueError(f"minutia at ({m.x:.1f}, {m.y:.1f}) is outside the image")
        theta = round(m.angle + 180.0) % 360
        lines.append(f"{x} {y} {theta} {m.quality}\n")
    return "".join(lines)


def read_xyt(text: str, height: int) -> list[Minutia]:
    """Parse ``.xyt`` text back into the ISO convention (kind ``OTHER``; quality optional)."""
    minutiae = []
    offset = 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        where = f"line {number}"
        fields = line.split()
        offset_here, offset = offset, offset + len(line.encode())
        if not fields:
            continue
        if len(fields) not in (3, 4):
            raise TemplateFormatError(
                offset_here, where, f"expected 3 or 4 fields, got {len(fields)}"
            )
        if not all(f.isascii() and f.isdigit() for f in fields):
            raise TemplateFormatError(offset_here, where, "fields must be unsigned integers")
        values = [int(f) for f in fields]
        x, y, theta = values[:3]
        quality = values[3] if len(values) == 4 else 0
        if not 1 <= y <= height:  # y = height - row, rows 0..height-1
            raise TemplateFormatError(offset_here, where, f"({x}, {y}) is outside the image")
        if not 0 <= theta < 360:
            raise TemplateFormatError(offset_here, where, f"theta {theta} is not 0..359")
        if not 0 <= quality <= 100:
            raise TemplateFormatError(offset_here, where, f"quality {quality} is not 0..100")
        minutiae.append(
            Minutia(
                x=float(x),
                y=float(height - y),
                angle=float((theta + 180) % 360),
                kind=MinutiaKind.OTHER,
                quality=quality,
            )
        )
    return minutiae
