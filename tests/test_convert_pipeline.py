"""The daemon's template message in the configured format, with the WSQ image when asked."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from edge.config import CaptureConfig, QualityConfig
from edge.minutiae import Minutia, MinutiaKind
from edge.pipeline import Accepted, Slot, process
from edge.templates import ansi378_2004, iso19794_2_2005, iso19794_2_2011
from edge.wire import MAX_PAYLOAD_BYTES, TemplateMessage
from firmware_bridge import FingerImage
from hil.fingers import FingerGenerator

SLOT = Slot(device_id="kiosk-1", booking_reference="BK-77", finger_position=7, impression_type=0)
PIXELS = FingerGenerator(seed=2).impression_image(0, 0)


class FixedExtractor:
    version = "fixed-1"

    def extract(self, pixels: npt.NDArray[np.uint8], ppi: float) -> list[Minutia]:
        return [
            Minutia(20.0 + 9 * i, 40.0 + 7 * i, 3.0 * i, MinutiaKind.ENDING, 80) for i in range(20)
        ]


def _message(**options: object) -> TemplateMessage:
    capture = FingerImage(PIXELS, 500.0, "zfm:0000:ffffffff", datetime(2026, 11, 28, tzinfo=UTC))
    result = process(capture, SLOT, FixedExtractor(), QualityConfig(min_minutiae=1), **options)  # type: ignore[arg-type]
    assert isinstance(result, Accepted)
    payload = result.message.to_payload()
    assert len(payload) <= MAX_PAYLOAD_BYTES
    return TemplateMessage.parse(payload)


def test_default_message_carries_iso2005_and_no_image() -> None:
    message = _message()
    assert message.template_format == "iso19794-2:2005" and message.image_wsq is None
    assert iso19794_2_2005.decode(message.template_bytes).views[0].finger_position == 7


def test_iso2011_keeps_every_minutia_and_puts_size_in_the_representation() -> None:
    message = _message(template_format="iso19794-2:2011")
    rep = iso19794_2_2011.decode(message.template_bytes).representations[0]
    assert (rep.width, rep.height, rep.finger_position, len(rep.minutiae)) == (256, 288, 7, 20)


def test_ansi378_stores_angles_in_two_degree_units() -> None:
    message = _message(template_format="ansi-incits-378:2004")
    record = ansi378_2004.decode(message.template_bytes)
    # 0, 3 and 6 degrees go through ISO 1/256-turn units first: 0, 2.81, 5.63 -> 0, 2, 6 degrees
    assert [m.angle for m in record.views[0].minutiae[:3]] == [0, 1, 3]


def test_wsq_image_travels_beside_the_template_when_configured() -> None:
    pytest.importorskip("_wsq")
    from edge.an2k import wsq

    message = _message(wsq_image=True)
    data = message.image_wsq_bytes
    assert data is not None
    decoded = wsq.decode(data)
    assert decoded.pixels.shape == PIXELS.shape and decoded.ppi == 500


def test_configuration_names_the_format_and_the_image_option() -> None:
    capture = CaptureConfig(template_format="ansi-incits-378:2004", send_wsq_image=True)
    assert capture.send_wsq_image
    with pytest.raises(ValidationError):
        CaptureConfig(template_format="ansi378")
