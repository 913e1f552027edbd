"""Cross-validated decoding: a model's decoding is chosen on held-out prints, never its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from miniature_corpus import write_miniature_corpus

import models
from edge.extraction import MinutiaeExtractor
from models.train.cross_decoding import choices, main, pooled
from models.train.evaluate import Score
from models.train.verification import DecodingPoint

SETTINGS = [(0.25, 8.0), (0.25, 12.0), (0.4, 8.0), (0.4, 12.0)]


def _grid(eers: list[float], matched: list[int], found: int = 100) -> list[DecodingPoint]:
    return [
        DecodingPoint(t, r, eer, Score(found, 100, m))
        for (t, r), eer, m in zip(SETTINGS, eers, matched, strict=True)
    ]


def test_pooled_averages_the_eers_and_pools_the_minutiae_counts() -> None:
    a = _grid([0.01, 0.02, 0.03, 0.04], [50, 60, 70, 80])
    b = _grid([0.03, 0.02, 0.01, 0.00], [10, 20, 30, 40], found=50)
    (first, *_rest) = pooled([a, b])
    assert (first.presence_threshold, first.nms_radius) == SETTINGS[0]
    assert first.mean_eer == pytest.approx(0.02)
    assert first.agreement == Score(150, 200, 60)


def test_pooled_refuses_grids_over_different_settings() -> None:
    a = _grid([0.01] * 4, [50] * 4)
    with pytest.raises(ValueError, match="different decoding settings"):
        pooled([a, a[:3]])


def test_a_runs_own_held_out_scores_never_enter_its_own_choice() -> None:
    grids = {
        "DB1_B": _grid([0.010, 0.010, 0.010, 0.010], [60, 60, 60, 60]),
        "DB2_B": _grid([0.010, 0.011, 0.012, 0.030], [40, 50, 70, 90]),
        "DB3_B": _grid([0.010, 0.011, 0.012, 0.030], [40, 50, 70, 90]),
    }
    before = choices(grids)
    # DB1's own scores now favour the last setting outright; its choice must not move.
    grids["DB1_B"] = _grid([0.030, 0.030, 0.030, 0.000], [0, 0, 0, 100])
    after = choices(grids)
    chosen, _grid_used, others = after["DB1_B"]
    assert others == ["DB2_B", "DB3_B"]
    assert chosen == before["DB1_B"][0]
    assert (chosen.presence_threshold, chosen.nms_radius) == (0.4, 8.0)
    # The runs that can see DB1's scores, and the all-database model, do move.
    assert after["DB2_B"][0] != before["DB2_B"][0]
    assert after[None][2] == ["DB1_B", "DB2_B", "DB3_B"]


def test_the_rule_keeps_the_best_agreement_within_the_eer_slack() -> None:
    grids = {
        "DB1_B": _grid([0.010, 0.011, 0.013, 0.030], [40, 50, 70, 90]),
        "DB2_B": _grid([0.010, 0.011, 0.013, 0.030], [40, 50, 70, 90]),
    }
    tight = choices(grids, eer_slack=0.002)[None][0]
    loose = choices(grids, eer_slack=0.025)[None][0]
    assert (tight.presence_threshold, tight.nms_radius) == (0.25, 12.0)
    assert (loose.presence_threshold, loose.nms_radius) == (0.4, 12.0)


def _run_folder(root: Path, name: str, held_out: str | None) -> Path:
    folder = root / name
    folder.mkdir()
    manifest: dict[str, object] = {"training": {"held_out": held_out, "databases": []}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize(
    ("second_holds_out", "all_model", "message"),
    [
        ("DB1_B", False, "did not hold out DB2_B"),
        ("DB2_B", True, "--all is the model trained on all"),
    ],
    ids=["a run named for a database it did not hold out", "an all model that held one out"],
)
def test_runs_that_do_not_match_their_role_are_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    second_holds_out: str,
    all_model: bool,
    message: str,
) -> None:
    db1 = _run_folder(tmp_path, "a", "DB1_B")
    db2 = _run_folder(tmp_path, "b", second_holds_out)
    argv = ["--corpus", str(tmp_path), "--run", f"DB1_B={db1}", "--run", f"DB2_B={db2}"]
    with pytest.raises(SystemExit):
        main(argv + (["--all", str(db1)] if all_model else []))
    assert message in capsys.readouterr().err


def test_every_model_is_redecoded_from_the_other_runs_held_out_scores(tmp_path: Path) -> None:
    databases = ["DB1_B", "DB2_B"]
    corpus = write_miniature_corpus(tmp_path / "corpus", databases, seed=7)
    shipped = Path(models.__file__).parent
    folders = {}
    for held_out in [*databases, None]:
        folder = tmp_path / f"run-{held_out}"
        folder.mkdir()
        for name in ("minutiae.onnx", "minutiae.int8.onnx"):
            shutil.copy(shipped / name, folder / name)
        content = json.loads((shipped / "manifest.json").read_text())
        content["training"]["held_out"] = held_out
        content["training"]["databases"] = [d for d in databases if d != held_out]
        (folder / "manifest.json").write_text(json.dumps(content))
        folders[held_out] = folder
    argv = ["--corpus", str(corpus), "--all", str(folders[None]), "--version", "9.9.9"]
    argv += ["--thresholds", "0.3", "0.45", "--radii", "8", "12"]
    for database in databases:
        argv += ["--run", f"{database}={folders[database]}"]

    assert main(argv) == 0

    for held_out, folder in folders.items():
        extractor = MinutiaeExtractor.load(folder)  # still the same, verified model files
        content = json.loads((folder / "manifest.json").read_text())
        metrics = content["metrics"]
        others = [d for d in databases if d != held_out]
        assert metrics["decoding_chosen_on"] == [f"{d} (the {d}-held-out run)" for d in others]
        decoding = extractor.manifest.decoding
        key = f"{decoding.presence_threshold}/{decoding.nms_radius:g}"
        assert key in metrics["decoding_choice"]["grid"]
        assert "cross-validated" in metrics["decoding_choice"]["rule"]
        assert sorted(metrics["training_databases"]) == sorted([*others, "all"])
        if held_out is None:
            assert content["version"] == "9.9.9"
            assert "held_out" not in metrics
        else:
            assert (
                content["version"] == json.loads((shipped / "manifest.json").read_text())["version"]
            )
            assert sorted(metrics["held_out"]) == sorted([held_out, "all"])
