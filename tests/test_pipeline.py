"""One capture through quality gate, extraction and packaging into a wire message."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pytest

from edge import ids
from edge.config import QualityConfig
from edge.extraction import MinutiaeExtractor
from edge.minutiae import Minutia, MinutiaKind
from edge.pipeline import Accepted, Rejected, Slot, process
from edge.quality import Rejection
from edge.templates import iso19794_2_2005
from edge.wire import TemplateMessage
from firmware_bridge import FingerImage
from hil.fingers import FingerGenerator

SLOT = Slot(device_id="kiosk-1", booking_reference="BK-77", finger_position=7, impression_type=0)


def image(pixels: npt.NDArray[np.uint8]) -> FingerImage:
    return FingerImage(pixels, 500.0, "zfm:0000:ffffffff", datetime(2026, 11, 28, tzinfo=UTC))


@pytest.fixture(scope="module")
def extractor() -> MinutiaeExtractor:
    return MinutiaeExtractor.load()


class FixedExtractor:
    """Stands in for the model where the test is about the gate, not about extraction."""

    version = "fixed-1"

    def __init__(self, count: int) -> None:
        self._minutiae = [Minutia(20.0 + 5 * i, 40.0, 90.0, MinutiaKind.ENDING, 80)
                          for i in range(count)]

    def extract(self, pixels: npt.NDArray[np.uint8], ppi: float) -> list[Minutia]:
        return self._minutiae


def test_a_good_finger_becomes_a_wire_message_carrying_a_valid_iso_record(
    extractor: MinutiaeExtractor,
) -> None:
    pixels = FingerGenerator(seed=2).impression_image(0, 0)
    result = process(image(pixels), SLOT, extractor, QualityConfig(min_minutiae=1))
    assert isinstance(result, Accepted)
    message = TemplateMessage.parse(result.message.to_payload())
    assert ids.is_uuid7(message.capture_id)
    assert (message.device_id, message.booking_reference, message.finger_position) == (
        "kiosk-1", "BK-77", 7)
    assert message.model_version == extractor.version
    assert message.sensor == "zfm:0000:ffffffff"
    record = iso19794_2_2005.decode(message.template_bytes)
    assert (record.width, record.height) == (256, 288)
    assert record.views[0].finger_position == 7
    assert record.views[0].finger_quality == message.quality
    assert len(record.views[0].minutiae) == result.minutiae_count


def test_a_blank_capture_is_rejected_before_extraction() -> None:
    result = process(image(np.full((288, 256), 250, np.uint8)), SLOT, FixedExtractor(30),
                     QualityConfig())
    assert isinstance(result, Rejected)
    assert result.report.rejection is Rejection.BLANK


def test_too_few_minutiae_is_a_rejection_with_that_reason() -> None:
    pixels = FingerGenerator(seed=2).impression_image(0, 0)
    config = QualityConfig(min_minutiae=8)
    assert isinstance(process(image(pixels), SLOT, FixedExtractor(8), config), Accepted)
    result = process(image(pixels), SLOT, FixedExtractor(7), config)
    assert isinstance(result, Rejected)
    assert result.report.rejection is Rejection.FEW_MINUTIAE


def test_every_capture_gets_its_own_time_ordered_id() -> None:
    pixels = FingerGenerator(seed=2).impression_image(0, 0)
    first, second = (process(image(pixels), SLOT, FixedExtractor(10), QualityConfig())
                     for _ in range(2))
    assert isinstance(first, Accepted) and isinstance(second, Accepted)
    assert first.message.capture_id < second.message.capture_id
