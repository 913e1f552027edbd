"""Minutiae template formats and the two helpers the daemon uses."""

from __future__ import annotations

from collections.abc import Iterable

from edge.minutiae import Minutia
from edge.templates import iso19794_2_2005
from edge.templates.conversion import from_iso_minutia, ppi_to_ppcm, to_iso_minutia
from edge.templates.errors import TemplateError, TemplateFormatError, TemplateValueError
from edge.templates.iso19794_2_2005 import FingerMinutiaeRecord, FingerView

__all__ = [
    "TemplateError",
    "TemplateFormatError",
    "TemplateValueError",
    "best_minutiae",
    "iso2005_minutiae",
    "minutiae_to_iso2005",
]

MAX_MINUTIAE = 255


def best_minutiae(minutiae: Iterable[Minutia]) -> list[Minutia]:
    """The minutiae a template keeps: all of them, or the 255 of highest quality (stable)."""
    return sorted(minutiae, key=lambda m: -m.quality)[:MAX_MINUTIAE]


def minutiae_to_iso2005(
    minutiae: Iterable[Minutia],
    width: int,
    height: int,
    ppi: float,
    finger_position: int,
    impression_type: int,
    quality: int,
) -> bytes:
    """One-view ISO/IEC 19794-2:2005 record; keeps the best 255 minutiae if there are more."""
    ranked = best_minutiae(minutiae)
    resolution = ppi_to_ppcm(ppi)
    view = FingerView(
        finger_position=finger_position,
        view_number=0,
        impression_type=impression_type,
        finger_quality=quality,
        minutiae=tuple(to_iso_minutia(m, width, height) for m in ranked),
    )
    record = FingerMinutiaeRecord(
        width=width, height=height, x_resolution=resolution, y_resolution=resolution, views=(view,)
    )
    return iso19794_2_2005.encode(record)


def iso2005_minutiae(data: bytes) -> tuple[FingerMinutiaeRecord, list[list[Minutia]]]:
    """Decode a record; also give each view's minutiae as :class:`Minutia`."""
    record = iso19794_2_2005.decode(data)
    return record, [[from_iso_minutia(m) for m in view.minutiae] for view in record.views]
