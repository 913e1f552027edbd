"""benchmarks.alternate: two models timed image by image in one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from miniature_corpus import write_miniature_corpus

import models
from benchmarks.alternate import main

SHIPPED = Path(models.__file__).parent


def test_both_models_extract_every_image_each_round_and_the_ratio_is_recorded(
    tmp_path: Path,
) -> None:
    corpus = write_miniature_corpus(tmp_path / "corpus", ["DB2_B", "DB3_B"], seed=13)
    out = tmp_path / "out"
    arguments = ["--corpus", str(corpus), "--baseline", str(SHIPPED), "--candidate", str(SHIPPED)]
    assert (
        main([*arguments, "--databases", "DB2_B", "DB3_B", "--rounds", "3", "--out", str(out)]) == 0
    )
    results = json.loads((out / "results.json").read_text())
    images = len(list((corpus / "fvc2002" / "DB3_B").glob("*.tif")))
    for row in results["databases"].values():
        assert row["extractions_each"] == 3 * images
        assert row["baseline_ms"] > 0 and row["candidate_ms"] > 0 and row["ratio"] > 0
    assert set(results["databases"]) == {"DB2_B", "DB3_B"}
    assert "| DB3_B |" in (out / "results.md").read_text()


def test_a_directory_without_a_model_is_refused(tmp_path: Path) -> None:
    corpus = write_miniature_corpus(tmp_path / "corpus", ["DB1_B"], seed=14)
    with pytest.raises(SystemExit):
        main(["--corpus", str(corpus), "--baseline", str(SHIPPED), "--candidate", str(tmp_path)])
