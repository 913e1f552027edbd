"""Between :class:`edge.minutiae.Minutia` (float pixels, degrees) and stored ISO minutiae."""

from __future__ import annotations

from edge.minutiae import Minutia, MinutiaKind
from edge.templates.errors import TemplateValueError
from edge.templates.iso19794_2_2005 import IsoMinutia

CM_PER_INCH = 2.54


def angle_to_byte(degrees: float) -> int:
    """Degrees counter-clockwise to 1/256-turn units, wrapping 360 to 0."""
    return round(degrees * 256 / 360) % 256


def byte_to_angle(units: int) -> float:
    return units * 360 / 256


def ppi_to_ppcm(ppi: float) -> int:
    """Pixels per inch to the pixels per centimetre the record stores (500 ppi -> 197)."""
    return round(ppi / CM_PER_INCH)


def to_iso_minutia(m: Minutia, width: int, height: int) -> IsoMinutia:
    """Round to the nearest pixel; a minutia that falls outside the image is refused."""
    x, y = round(m.x), round(m.y)
    if not (0 <= x < width and 0 <= y < height):
        raise TemplateValueError(f"minutia at ({m.x:.1f}, {m.y:.1f}) is outside {width}x{height}")
    if not 0 <= m.quality <= 100:
        raise TemplateValueError(f"minutia quality {m.quality} is not 0..100")
    return IsoMinutia(
        kind=int(m.kind), x=x, y=y, angle=angle_to_byte(m.angle), quality=int(m.quality)
    )


def from_iso_minutia(m: IsoMinutia) -> Minutia:
    return Minutia(
        x=float(m.x),
        y=float(m.y),
        angle=byte_to_angle(m.angle),
        kind=MinutiaKind(m.kind),
        quality=m.quality,
    )
