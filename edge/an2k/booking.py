"""A booking transaction described in TOML (or on the command line) and turned into records.

```toml
[transaction]
tot = "CAR"
dai = "WVIAFIS0Z"
ori = "NY0303000"
tcn = "KIOSK07-0001"
date = 2026-11-28          # optional, default today (UTC)
priority = 2               # optional
domain = ["EBTS", "11.1"]  # optional

[descriptive]              # Type-2 fields by number: a string, a list of subfields,
"018" = "DOE,JOHN"         # or a list of lists of information items
"022" = ["19800101"]

[[image]]                  # one Type-14 per image, WSQ at 500 ppi
finger = 13                # 0-10, 11/12 plain thumbs, 13/14/15 slaps
file = "right_four.png"
impression = 0
quality = { "2" = 3, "3" = 2 }             # NQM per finger
amputated = { "5" = "XX" }                 # AMP: XX amputated, UP unable to print
segments = [[2, 1, 250, 5, 280]]           # SEG: finger, left, right, top, bottom
device_mode = "CONTROLLED"

[[minutiae]]               # one Type-9 per template file (any format kiosk-edge reads)
finger = 2
file = "right_index.iso"
standard_fields = true     # optional: also 9.005-9.012 (FMT "S") for receivers that need them
```
Relative file names are read from the TOML file's directory.
"""

from __future__ import annotations

import dataclasses
import datetime
import tomllib
from pathlib import Path
from typing import Annotated

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from edge.an2k import transaction as tx
from edge.an2k.errors import An2kValueError
from edge.an2k.records import Text, text
from edge.templates import ansi378_2004
from edge.templates.convert import convert
from edge.templates.formats import TemplateFormat

Code = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[ -~]+$")]
ItemValue = str | list[str] | list[list[str]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TransactionSpec(_Strict):
    tot: Code
    dai: Code
    ori: Code
    tcn: Code
    date: datetime.date | None = None
    priority: int | None = Field(default=None, ge=1, le=9)
    tcr: Code | None = None
    domain: tuple[str, str] | None = None


class ImageSpec(_Strict):
    finger: int = Field(ge=0, le=15)
    file: Path
    impression: int = 0
    quality: dict[int, int] | int | None = None
    amputated: dict[int, str] = {}
    segments: list[tuple[int, int, int, int, int]] = []
    device_mode: str | None = None


class MinutiaeSpec(_Strict):
    finger: int = Field(ge=0, le=10)
    file: Path
    # ANSI/NIST-ITL 1-2011 keeps 9.005-9.012 for legacy interchange only, so they are opt-in.
    standard_fields: bool = False


class BookingSpec(_Strict):
    transaction: TransactionSpec
    descriptive: dict[int, ItemValue] = {}
    image: list[ImageSpec] = []
    minutiae: list[MinutiaeSpec] = []


def load_spec(path: Path) -> BookingSpec:
    """Parse and validate a booking TOML file; problems raise :class:`An2kValueError`."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return BookingSpec.model_validate(raw)
    except tomllib.TOMLDecodeError as exc:
        raise An2kValueError(f"{path}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise An2kValueError(f"{path}: {problems}") from None


def field_value(value: ItemValue) -> Text:
    """A TOML value as subfields of information items."""
    if isinstance(value, str):
        return text(value)
    return text(*[item if isinstance(item, str) else tuple(item) for item in value])


def build(spec: BookingSpec, base: Path, today: datetime.date) -> tx.Transaction:
    """Read the images and templates the spec names and assemble the transaction."""
    t = spec.transaction
    info = tx.TransactionInfo(
        tot=t.tot,
        dai=t.dai,
        ori=t.ori,
        tcn=t.tcn,
        date=t.date or today,
        priority=t.priority,
        tcr=t.tcr,
        domain=t.domain,
    )
    descriptive = (
        ({n: field_value(v) for n, v in spec.descriptive.items()},) if spec.descriptive else ()
    )
    images = tuple(_image(i, base, info.date) for i in spec.image)
    minutiae = tuple(_minutiae(m, base) for m in spec.minutiae)
    return tx.Transaction(info, descriptive, images, minutiae)


def _image(spec: ImageSpec, base: Path, day: datetime.date) -> tx.FingerprintImage:
    path = spec.file if spec.file.is_absolute() else base / spec.file
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except OSError as exc:
        raise An2kValueError(f"image {path}: {exc}") from None
    if isinstance(spec.quality, int):
        quality: tuple[tuple[int, int], ...] = ((spec.finger, spec.quality),)
    else:
        quality = tuple(sorted((spec.quality or {}).items()))
    return tx.FingerprintImage(
        finger_position=spec.finger,
        pixels=pixels,
        impression_type=spec.impression,
        capture_date=day,
        quality=quality,
        amputations=tuple(sorted(spec.amputated.items())),
        segments=tuple(tx.Segment(*s) for s in spec.segments),
        device_mode=spec.device_mode,
    )


def _minutiae(spec: MinutiaeSpec, base: Path) -> tx.FingerMinutiae:
    path = spec.file if spec.file.is_absolute() else base / spec.file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise An2kValueError(f"template {path}: {exc}") from None
    record = ansi378_2004.decode(convert(data, TemplateFormat.ANSI378).data)
    view = record.views[0]
    minutiae = tx.FingerMinutiae(
        finger_position=spec.finger,
        width=record.width,
        height=record.height,
        x_resolution=record.x_resolution,
        y_resolution=record.y_resolution,
        minutiae=view.minutiae,
        impression_type=view.impression_type,
        view_number=view.view_number,
        finger_quality=view.finger_quality,
        equipment=(record.equipment_compliance, record.equipment_id),
    )
    if spec.standard_fields:
        return dataclasses.replace(minutiae, standard=standard_minutiae(minutiae))
    return minutiae


READING_SYSTEM = "KIOSK-EDGE"  # 9.005 OFR name
_STANDARD_KIND = {1: "A", 2: "B", 0: "D"}  # ending, bifurcation, other -> undetermined


def standard_minutiae(view: tx.FingerMinutiae) -> tx.StandardMinutiae:
    """The view's INCITS 378 minutiae in the units of 9.012, as NBIS mindtct writes them:
    0.01 mm from the bottom-left corner (y = height - 1 - y, in 0.01 mm), whole degrees
    turned by 180 from INCITS 378, quality 1 (none given) or 63 (worst) .. 2 (best)."""
    if not (view.x_resolution and view.y_resolution):
        raise An2kValueError("standard-format minutiae need the image resolution")
    height = _hundredths_mm(view.height, view.y_resolution)
    return tx.StandardMinutiae(
        system=READING_SYSTEM,
        method="A",  # extracted automatically, no human editing possible
        minutiae=tuple(
            tx.StandardMinutia(
                x=_hundredths_mm(m.x, view.x_resolution),
                y=height - 1 - _hundredths_mm(m.y, view.y_resolution),
                theta=(2 * m.angle + 180) % 360,
                quality=63 - (61 * m.quality + 50) // 100 if m.quality else 1,
                kind=_STANDARD_KIND[m.kind],
            )
            for m in view.minutiae
        ),
    )


def _hundredths_mm(pixels: int, per_cm: int) -> int:
    return (2000 * pixels + per_cm) // (2 * per_cm)
