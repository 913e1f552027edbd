"""One capture through the pipeline: quality gate -> extraction -> template -> wire message.

Everything here is pure computation on an image already taken; the daemon owns the sensor and
the outbox on either side of it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from edge import ids, templates
from edge.config import QualityConfig
from edge.minutiae import Minutia
from edge.quality import QualityReport, assess, with_minutiae_check
from edge.templates.convert import convert
from edge.templates.formats import TemplateFormat as Codec
from edge.wire import TemplateFormat, TemplateMessage
from firmware_bridge import FingerImage

TEMPLATE_FORMAT: Final = "iso19794-2:2005"
_CODECS: Final = {"iso19794-2:2011": Codec.ISO2011, "ansi-incits-378:2004": Codec.ANSI378}
WSQ_PPI: Final = 500.0


class Extractor(Protocol):
    @property
    def version(self) -> str: ...

    def extract(self, pixels: npt.NDArray[np.uint8], ppi: float) -> list[Minutia]: ...


@dataclass(frozen=True)
class Slot:
    """What the operator asked to capture next."""

    device_id: str
    booking_reference: str
    finger_position: int
    impression_type: int


@dataclass(frozen=True)
class Accepted:
    message: TemplateMessage
    minutiae_count: int
    report: QualityReport


@dataclass(frozen=True)
class Rejected:
    report: QualityReport


def process(
    image: FingerImage,
    slot: Slot,
    extractor: Extractor,
    quality: QualityConfig,
    *,
    template_format: TemplateFormat = TEMPLATE_FORMAT,
    wsq_image: bool = False,
) -> Accepted | Rejected:
    """Gate, extract and package one capture; a rejection carries its reason.

    The record is built as ISO/IEC 19794-2:2005 and converted when another format is asked
    for (ANSI 378 stores angles in 2-degree units); ``wsq_image`` adds the WSQ-compressed image.
    """
    report = assess(image.pixels, quality)
    if not report.accepted:
        return Rejected(report)
    minutiae = extractor.extract(image.pixels, image.ppi)
    report = with_minutiae_check(report, len(minutiae), quality)
    if not report.accepted:
        return Rejected(report)
    record = templates.minutiae_to_iso2005(
        minutiae,
        width=image.width,
        height=image.height,
        ppi=image.ppi,
        finger_position=slot.finger_position,
        impression_type=slot.impression_type,
        quality=report.score,
    )
    if template_format in _CODECS:
        record = convert(record, _CODECS[template_format]).data
    message = TemplateMessage(
        capture_id=ids.new_capture_id(),
        device_id=slot.device_id,
        booking_reference=slot.booking_reference,
        finger_position=slot.finger_position,
        impression_type=slot.impression_type,
        quality=report.score,
        captured_at=image.captured_at,
        sensor=image.sensor,
        model_version=extractor.version,
        template_format=template_format,
        template=base64.b64encode(record).decode("ascii"),
        image_wsq=_wsq_base64(image) if wsq_image else None,
    )
    return Accepted(message, len(minutiae), report)


def _wsq_base64(image: FingerImage) -> str:
    from edge.an2k import wsq

    if abs(image.ppi - WSQ_PPI) >= 1:
        raise ValueError(f"WSQ images are sent at 500 ppi; this sensor gives {image.ppi}")
    return base64.b64encode(wsq.encode(image.pixels)).decode("ascii")
