"""The leave-one-database-out report: each database scored by its own model, then averaged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from miniature_corpus import write_miniature_corpus

import models
from benchmarks import lodo


def test_each_held_out_database_gets_a_row_and_the_mean_averages_them(tmp_path: Path) -> None:
    corpus = write_miniature_corpus(tmp_path / "corpus", ["DB1_B", "DB3_B"], seed=11)
    shipped = Path(models.__file__).parent
    out = tmp_path / "out"
    argv = ["--corpus", str(corpus), "--out", str(out)]
    argv += ["--holdout", f"DB3_B={shipped}", "--holdout", f"DB1_B={shipped}"]
    assert lodo.main(argv) == 0
    summary = json.loads((out / "results.json").read_text())
    assert list(summary["databases"]) == ["DB1_B", "DB3_B"]
    f1 = [summary["databases"][d]["fp32"]["minutiae"]["f1"] for d in ("DB1_B", "DB3_B")]
    assert summary["mean"]["fp32"]["minutiae"]["f1"] == pytest.approx(sum(f1) / 2, abs=1e-4)
    assert (out / "DB1_B" / "results.json").exists() and (out / "DB3_B" / "det.png").exists()
    rows = [line.split(" | ")[0] for line in (out / "results.md").read_text().splitlines()]
    assert [r for r in rows if r in ("| DB1_B", "| DB3_B", "| mean")] == [
        "| DB1_B",
        "| DB3_B",
        "| mean",
    ]


def test_the_figures_can_be_recorded_in_a_manifest(tmp_path: Path) -> None:
    corpus = write_miniature_corpus(tmp_path / "corpus", ["DB2_B"], seed=12)
    shipped = Path(models.__file__).parent
    manifest = tmp_path / "manifest.json"
    shutil.copy(shipped / "manifest.json", manifest)
    before = json.loads(manifest.read_text())
    argv = ["--corpus", str(corpus), "--out", str(tmp_path / "out")]
    assert lodo.main([*argv, "--holdout", f"DB2_B={shipped}", "--record-in", str(manifest)]) == 0
    after = json.loads(manifest.read_text())
    recorded = after["metrics"].pop("leave_one_database_out")
    before["metrics"].pop("leave_one_database_out", None)
    assert after == before  # nothing else in the manifest changes
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert recorded["databases"]["DB2_B"]["fp32"] == summary["databases"]["DB2_B"]["fp32"]
    assert recorded["mean"]["fp32"] == summary["mean"]["fp32"]
    assert "DB2_B=" in recorded["command"]


@pytest.mark.parametrize(
    "pairs",
    [["DB9_B=models"], ["DB1_B"], ["DB1_B="], ["DB1_B=a", "DB1_B=b"]],
    ids=["unknown database", "no model", "empty model", "database twice"],
)
def test_a_malformed_holdout_is_refused(pairs: list[str], tmp_path: Path) -> None:
    argv = ["--corpus", str(tmp_path)]
    for pair in pairs:
        argv += ["--holdout", pair]
    with pytest.raises(SystemExit) as refused:
        lodo.main(argv)
    assert refused.value.code == 2
