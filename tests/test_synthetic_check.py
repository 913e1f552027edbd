"""The synthetic check: exact minutiae from the HIL generator, data the model never saw."""

from __future__ import annotations

import json

import pytest

from edge.extraction import MinutiaeExtractor
from hil.fingers import QUALITIES, FingerGenerator
from models.train import synthetic_check
from models.train.synthetic_check import check_condition


@pytest.fixture(scope="module")
def extractor() -> MinutiaeExtractor:
    return MinutiaeExtractor.load()


def test_a_condition_pairs_impressions_of_the_same_finger_as_genuine(
    extractor: MinutiaeExtractor,
) -> None:
    report = check_condition(extractor, FingerGenerator(5), "good", fingers=3, impressions=2)

    assert (report.genuine_pairs, report.impostor_pairs) == (3, 12)
    # Exact minutiae of two touches of one finger outscore every other finger's: were the ids
    # paired wrongly, genuine pairs would be strangers and the error rate far from zero.
    assert report.exact["all_impostors"]["eer"] == 0.0
    assert report.extracted["all_impostors"]["eer"] == 0.0
    assert report.minutiae.f1 > 0.8


def test_verification_needs_two_impressions_of_two_fingers(extractor: MinutiaeExtractor) -> None:
    with pytest.raises(ValueError, match="at least 2 fingers with 2 impressions"):
        check_condition(extractor, FingerGenerator(5), "good", fingers=3, impressions=1)


def test_the_command_reports_every_condition(capsys: pytest.CaptureFixture[str]) -> None:
    synthetic_check.main(["--fingers", "2", "--impressions", "2", "--seed", "5"])

    report = json.loads(capsys.readouterr().out)
    assert list(report) == list(QUALITIES)
    for condition in report.values():
        assert {"f1", "precision", "recall", "verification"} <= set(condition)
        assert set(condition["verification"]) == {"extracted", "exact_minutiae"}
        assert condition["genuine_pairs"] == 2
