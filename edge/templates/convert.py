"""Conversion between ISO/IEC 19794-2:2005, ISO/IEC 19794-2:2011, ANSI INCITS 378-2004 and .xyt.

Every conversion goes through one neutral view of a finger and returns, beside the bytes, the
list of what could not be carried exactly (see docs/formats.md). What no target can express
(an impression type the target has no code for, views of different image sizes in a format
with one size per record) is refused with :class:`TemplateValueError`, never guessed.

Angles are kept as exact fractions of degrees and rounded once, half up, into the target's
unit: ISO 1/256 turn (1.40625 degrees) or ANSI 2 degrees. ANSI -> ISO -> ANSI is exact; ISO ->
ANSI moves an angle by up to 1 degree. A minutia quality of 0 means "not reported" in ISO 2005
and ANSI 378 but "lowest" in ISO 2011 (which says "not reported" with 254).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from edge.minutiae import Minutia, MinutiaKind
from edge.templates import ansi378_2004, iso19794_2_2005, iso19794_2_2011, xyt
from edge.templates.ansi378_2004 import AnsiFingerView, AnsiMinutia, AnsiMinutiaeRecord
from edge.templates.conversion import ppi_to_ppcm
from edge.templates.errors import TemplateValueError
from edge.templates.formats import TemplateFormat, detect_format
from edge.templates.iso19794_2_2005 import (
    ExtendedDataBlock,
    FingerMinutiaeRecord,
    FingerView,
    IsoMinutia,
)
from edge.templates.iso19794_2_2011 import (
    ENDING_RIDGE_END,
    ENDING_VALLEY_BIFURCATION,
    QUALITY_FAILED,
    QUALITY_NOT_REPORTED,
    CaptureDateTime,
    Iso2011Record,
    QualityRecord,
    Representation,
)

RIDGE_COUNT_BLOCK = 1
CORE_DELTA_BLOCK = 2
ZONAL_QUALITY_BLOCK = 3
VENDOR_BLOCKS = 0x0100  # and up: vendor-defined, carried as they are
ISO_UNITS_PER_TURN = 256
ANSI_DEGREES_PER_UNIT = 2
ISO2011_CONTACTLESS = 24
ANSI_CONTACTLESS = 9
ISO2005_IMPRESSIONS = frozenset({0, 1, 2, 3, 8})


@dataclass(frozen=True)
class NeutralMinutia:
    kind: int  # 0 other, 1 ridge ending, 2 bifurcation
    x: int
    y: int
    angle: Fraction  # degrees counter-clockwise, [0, 360)
    quality: int | None  # 0..100; None when not reported


@dataclass(frozen=True)
class NeutralView:
    finger_position: int
    view_number: int
    impression_type: int  # ISO 2011 code space (contactless is 24)
    finger_quality: int | None
    width: int
    height: int
    x_resolution: int  # pixels per cm
    y_resolution: int
    minutiae: tuple[NeutralMinutia, ...]
    extended_data: tuple[ExtendedDataBlock, ...]  # ISO/ANSI shared layouts, header excluded
    ending_type: int  # iso19794_2_2011.ENDING_*
    equipment_id: int
    equipment_compliance: int = 0  # ISO 2005 and ANSI 378 only


@dataclass(frozen=True)
class XytGeometry:
    """What a .xyt file does not say and a binary record needs."""

    width: int
    height: int
    ppi: float = 500.0
    finger_position: int = 0
    impression_type: int = 0


@dataclass(frozen=True)
class Conversion:
    data: bytes
    losses: tuple[str, ...] = field(default=())


class _Losses:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        if message not in self.items:
            self.items.append(message)


def convert(
    data: bytes,
    target: TemplateFormat,
    *,
    geometry: XytGeometry | None = None,
    view: int = 0,
) -> Conversion:
    """Re-encode a template in ``target``; ``geometry`` is needed when the input is .xyt,
    ``view`` picks the finger view written to .xyt (which holds one)."""
    source = detect_format(data)
    if source is target:
        decode_any(data, source)  # validate, then hand back the very bytes
        return Conversion(bytes(data))
    losses = _Losses()
    views = _to_neutral(data, source, geometry, losses)
    return Conversion(_from_neutral(views, target, view, losses), tuple(losses.items))


def decode_any(
    data: bytes, source: TemplateFormat
) -> FingerMinutiaeRecord | AnsiMinutiaeRecord | Iso2011Record | list[Minutia]:
    """Decode with the strict decoder for ``source`` (.xyt needs no geometry to be checked)."""
    if source is TemplateFormat.ISO2005:
        return iso19794_2_2005.decode(data)
    if source is TemplateFormat.ANSI378:
        return ansi378_2004.decode(data)
    if source is TemplateFormat.ISO2011:
        return iso19794_2_2011.decode(data)
    return xyt.read_xyt(data.decode("ascii"), height=0x3FFF + 1)


def _to_neutral(
    data: bytes, source: TemplateFormat, geometry: XytGeometry | None, losses: _Losses
) -> list[NeutralView]:
    if source is TemplateFormat.ISO2005:
        return _from_iso2005(iso19794_2_2005.decode(data))
    if source is TemplateFormat.ANSI378:
        return _from_ansi(ansi378_2004.decode(data), losses)
    if source is TemplateFormat.ISO2011:
        return _from_iso2011(iso19794_2_2011.decode(data), losses)
    if geometry is None:
        raise TemplateValueError(".xyt carries no image size: give width, height and resolution")
    return [_from_xyt(data, geometry, losses)]


def _from_neutral(
    views: list[NeutralView], target: TemplateFormat, view: int, losses: _Losses
) -> bytes:
    if target is TemplateFormat.ISO2005:
        return iso19794_2_2005.encode(_to_iso2005(views, losses))
    if target is TemplateFormat.ANSI378:
        return ansi378_2004.encode(_to_ansi(views, losses))
    if target is TemplateFormat.ISO2011:
        return iso19794_2_2011.encode(_to_iso2011(views, losses))
    return _to_xyt(views, view, losses).encode("ascii")


# --- into the neutral view -------------------------------------------------------------------


def _older_quality(quality: int) -> int | None:
    """ISO 2005 and ANSI 378 say "not reported" with 0."""
    return quality or None


def _from_iso2005(record: FingerMinutiaeRecord) -> list[NeutralView]:
    return [
        NeutralView(
            finger_position=v.finger_position,
            view_number=v.view_number,
            impression_type=v.impression_type,
            finger_quality=v.finger_quality,
            width=record.width,
            height=record.height,
            x_resolution=record.x_resolution,
            y_resolution=record.y_resolution,
            minutiae=tuple(
                NeutralMinutia(
                    m.kind,
                    m.x,
                    m.y,
                    Fraction(m.angle * 360, ISO_UNITS_PER_TURN),
                    _older_quality(m.quality),
                )
                for m in v.minutiae
            ),
            extended_data=v.extended_data,
            ending_type=ENDING_VALLEY_BIFURCATION,
            equipment_id=record.equipment_id,
            equipment_compliance=record.equipment_compliance,
        )
        for v in record.views
    ]


def _from_ansi(record: AnsiMinutiaeRecord, losses: _Losses) -> list[NeutralView]:
    if record.product_owner or record.product_type:
        losses.add("CBEFF product identifier (ANSI 378 only) dropped")
    views = []
    for v in record.views:
        blocks = []
        for block in v.extended_data:
            if block.type_id == CORE_DELTA_BLOCK:
                losses.add("core/delta block dropped: ANSI 378 stores its angles in other units")
            elif CORE_DELTA_BLOCK < block.type_id < VENDOR_BLOCKS:
                losses.add("blocks of types ANSI 378 reserves dropped (ISO gives them meanings)")
            else:
                blocks.append(block)
        impression = (
            ISO2011_CONTACTLESS if v.impression_type == ANSI_CONTACTLESS else v.impression_type
        )
        views.append(
            NeutralView(
                finger_position=v.finger_position,
                view_number=v.view_number,
                impression_type=impression,
                finger_quality=v.finger_quality,
                width=record.width,
                height=record.height,
                x_resolution=record.x_resolution,
                y_resolution=record.y_resolution,
                minutiae=tuple(
                    NeutralMinutia(
                        m.kind,
                        m.x,
                        m.y,
                        Fraction(m.angle * ANSI_DEGREES_PER_UNIT),
                        _older_quality(m.quality),
                    )
                    for m in v.minutiae
                ),
                extended_data=tuple(blocks),
                ending_type=ENDING_RIDGE_END,
                equipment_id=record.equipment_id,
                equipment_compliance=record.equipment_compliance,
            )
        )
    return views


def _from_iso2011(record: Iso2011Record, losses: _Losses) -> list[NeutralView]:
    views = []
    for rep in record.representations:
        if rep.capture_datetime != CaptureDateTime() or rep.device_technology or rep.device_vendor:
            losses.add("capture date-time, device technology and vendor (ISO 2011 only) dropped")
        if rep.certifications:
            losses.add("certification records (ISO 2011 only) dropped")
        if rep.device_id > 0x0FFF:
            losses.add("device type id over 12 bits dropped (the older formats hold 12 bits)")
        finger_quality = None
        if rep.quality_records:
            first = rep.quality_records[0]
            finger_quality = None if first.score == QUALITY_FAILED else first.score
            if len(rep.quality_records) > 1 or first.algorithm_vendor or first.algorithm_id:
                losses.add("only the first quality score is kept, without its algorithm")
        minutiae = []
        for m in rep.minutiae:
            quality: int | None = m.quality
            if m.quality == QUALITY_FAILED:
                losses.add("minutia quality 255 (failed) becomes 'not reported'")
                quality = None
            elif m.quality == QUALITY_NOT_REPORTED:
                quality = None
            angle = Fraction(m.angle * 360, ISO_UNITS_PER_TURN)
            minutiae.append(NeutralMinutia(m.kind, m.x, m.y, angle, quality))
        views.append(
            NeutralView(
                finger_position=rep.finger_position,
                view_number=rep.view_number,
                impression_type=rep.impression_type,
                finger_quality=finger_quality,
                width=rep.width,
                height=rep.height,
                x_resolution=rep.x_resolution,
                y_resolution=rep.y_resolution,
                minutiae=tuple(minutiae),
                extended_data=rep.extended_data,
                ending_type=rep.ending_type,
                equipment_id=rep.device_id if rep.device_id <= 0x0FFF else 0,
            )
        )
    return views


def _from_xyt(data: bytes, geometry: XytGeometry, losses: _Losses) -> NeutralView:
    losses.add(".xyt carries no minutia type: every minutia is 'other'")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise TemplateValueError(f".xyt is not ASCII text (byte {exc.start})") from None
    minutiae = []
    for m in xyt.read_xyt(text, geometry.height):
        x, y = round(m.x), round(m.y)
        if not (0 <= x < geometry.width and 0 <= y < geometry.height):
            raise TemplateValueError(f"minutia at ({x}, {y}) is outside the given image size")
        minutiae.append(
            NeutralMinutia(int(m.kind), x, y, Fraction(round(m.angle)), m.quality or None)
        )
    resolution = ppi_to_ppcm(geometry.ppi)
    return NeutralView(
        finger_position=geometry.finger_position,
        view_number=0,
        impression_type=geometry.impression_type,
        finger_quality=None,
        width=geometry.width,
        height=geometry.height,
        x_resolution=resolution,
        y_resolution=resolution,
        minutiae=tuple(minutiae),
        extended_data=(),
        ending_type=ENDING_VALLEY_BIFURCATION,
        equipment_id=0,
    )


# --- out of the neutral view -----------------------------------------------------------------


def iso_angle(degrees: Fraction) -> int:
    """Degrees to 1/256 turn, rounded half up, 256 wrapping to 0."""
    return math.floor(degrees * ISO_UNITS_PER_TURN / 360 + Fraction(1, 2)) % ISO_UNITS_PER_TURN


def ansi_angle(degrees: Fraction) -> int:
    """Degrees to 2-degree units, rounded half up, 180 wrapping to 0."""
    return math.floor(degrees / ANSI_DEGREES_PER_UNIT + Fraction(1, 2)) % 180


def _shared_geometry(views: list[NeutralView], target: str) -> tuple[int, int, int, int]:
    sizes = {(v.width, v.height, v.x_resolution, v.y_resolution) for v in views}
    if len(sizes) != 1:
        raise TemplateValueError(
            f"{target} has one image size and resolution per record; the views differ: "
            + ", ".join(f"{w}x{h} at {x}x{y} px/cm" for w, h, x, y in sorted(sizes))
        )
    return sizes.pop()


def _older_minutia_quality(quality: int | None, losses: _Losses) -> int:
    if quality is None:
        return 0
    if quality == 0:
        losses.add("minutia quality 0 raised to 1 (0 means 'not reported' in the target)")
        return 1
    return quality


def _ending_note(views: Iterable[NeutralView], wanted: int, losses: _Losses) -> None:
    if any(v.ending_type != wanted and any(m.kind == 1 for m in v.minutiae) for v in views):
        losses.add(
            "ridge endings keep their positions although the target places them by the other "
            "convention (valley bifurcation vs ridge end point)"
        )


def _equipment_id(views: list[NeutralView], losses: _Losses) -> int:
    ids = {v.equipment_id for v in views}
    if len(ids) > 1:
        losses.add("views name different capture devices; the first one's id is kept")
    return views[0].equipment_id


def _to_iso2005(views: list[NeutralView], losses: _Losses) -> FingerMinutiaeRecord:
    width, height, x_res, y_res = _shared_geometry(views, "ISO 2005")
    _ending_note(views, ENDING_VALLEY_BIFURCATION, losses)
    out = []
    for v in views:
        if v.impression_type not in ISO2005_IMPRESSIONS:
            raise TemplateValueError(f"impression type {v.impression_type} has no ISO 2005 code")
        out.append(
            FingerView(
                finger_position=v.finger_position,
                view_number=v.view_number,
                impression_type=v.impression_type,
                finger_quality=v.finger_quality or 0,
                minutiae=tuple(
                    IsoMinutia(
                        m.kind,
                        m.x,
                        m.y,
                        iso_angle(m.angle),
                        _older_minutia_quality(m.quality, losses),
                    )
                    for m in v.minutiae
                ),
                extended_data=v.extended_data,
            )
        )
    return FingerMinutiaeRecord(
        width=width,
        height=height,
        x_resolution=x_res,
        y_resolution=y_res,
        views=tuple(out),
        equipment_id=_equipment_id(views, losses),
        equipment_compliance=views[0].equipment_compliance,
    )


def _to_ansi(views: list[NeutralView], losses: _Losses) -> AnsiMinutiaeRecord:
    width, height, x_res, y_res = _shared_geometry(views, "ANSI 378")
    _ending_note(views, ENDING_RIDGE_END, losses)
    out = []
    for v in views:
        impression = (
            ANSI_CONTACTLESS if v.impression_type == ISO2011_CONTACTLESS else v.impression_type
        )
        if impression not in ansi378_2004.IMPRESSION_TYPES:
            raise TemplateValueError(f"impression type {v.impression_type} has no ANSI 378 code")
        blocks = []
        for block in v.extended_data:
            if block.type_id in (CORE_DELTA_BLOCK, ZONAL_QUALITY_BLOCK):
                losses.add("core/delta and zonal quality blocks dropped (ISO layouts)")
            else:
                blocks.append(block)
        if any(ansi_angle(m.angle) * ANSI_DEGREES_PER_UNIT != m.angle for m in v.minutiae):
            losses.add("minutia angles rounded to 2-degree units")
        out.append(
            AnsiFingerView(
                finger_position=v.finger_position,
                view_number=v.view_number,
                impression_type=impression,
                finger_quality=v.finger_quality or 0,
                minutiae=tuple(
                    AnsiMinutia(
                        m.kind,
                        m.x,
                        m.y,
                        ansi_angle(m.angle),
                        _older_minutia_quality(m.quality, losses),
                    )
                    for m in v.minutiae
                ),
                extended_data=tuple(blocks),
            )
        )
    return AnsiMinutiaeRecord(
        width=width,
        height=height,
        x_resolution=x_res,
        y_resolution=y_res,
        views=tuple(out),
        equipment_id=_equipment_id(views, losses),
        equipment_compliance=views[0].equipment_compliance,
    )


def _to_iso2011(views: list[NeutralView], losses: _Losses) -> Iso2011Record:
    reps = []
    for v in views:
        if v.equipment_compliance:
            losses.add("capture equipment compliance bits dropped (ISO 2011 certifies otherwise)")
        qualities = [QUALITY_NOT_REPORTED if m.quality is None else m.quality for m in v.minutiae]
        reps.append(
            Representation(
                finger_position=v.finger_position,
                width=v.width,
                height=v.height,
                x_resolution=v.x_resolution,
                y_resolution=v.y_resolution,
                impression_type=v.impression_type,
                view_number=v.view_number,
                minutiae=tuple(
                    IsoMinutia(m.kind, m.x, m.y, iso_angle(m.angle), q)
                    for m, q in zip(v.minutiae, qualities, strict=True)
                ),
                extended_data=v.extended_data,
                device_id=v.equipment_id,
                quality_records=()
                if v.finger_quality is None
                else (QualityRecord(v.finger_quality),),
                minutia_size=5 if all(q == QUALITY_NOT_REPORTED for q in qualities) else 6,
                ending_type=v.ending_type,
            )
        )
    return Iso2011Record(representations=tuple(reps))


def _to_xyt(views: list[NeutralView], index: int, losses: _Losses) -> str:
    if not 0 <= index < len(views):
        raise TemplateValueError(f"view {index} does not exist; the record has {len(views)}")
    if len(views) > 1:
        losses.add(f".xyt holds one view: wrote view {index} of {len(views)}")
    v = views[index]
    losses.add(".xyt drops minutia type, finger position, image size and extended data")
    if any(m.angle.denominator != 1 for m in v.minutiae):
        losses.add("minutia angles rounded to whole degrees")
    minutiae = [
        Minutia(
            x=float(m.x),
            y=float(m.y),
            angle=float(m.angle),
            kind=MinutiaKind(m.kind),
            quality=m.quality or 0,
        )
        for m in v.minutiae
    ]
    return xyt.write_xyt(minutiae, v.height)
