"""A sweep trains, then ``python -m models.train`` exports, tunes and quantises its run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")  # the train extra; the kiosk's own test environment lacks it

from miniature_corpus import write_miniature_corpus

from edge.extraction import MinutiaeExtractor
from models.train import sweep
from models.train.__main__ import DECODING_RULES, decoding_rule_text
from models.train.__main__ import main as train_main
from models.train.net import MinutiaeNet
from models.train.verification import NMS_RADII, THRESHOLDS

TINY = ["--steps", "2", "--batch-size", "2", "--crop", "64", "--width", "8", "--device", "cpu"]
RUNS = ["--run", "DB3_B:corpus", "--run", "all:corpus"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_run_trained_in_a_sweep_is_exported_tuned_and_quantised_by_the_training_command(
    tmp_path: Path,
) -> None:
    corpus = write_miniature_corpus(
        tmp_path / "corpus", ["DB1_B", "DB2_B", "DB3_B", "DB4_B"], seed=3
    )
    checkpoints = ["--checkpoints", str(tmp_path / "checkpoints")]
    sweep.main(["--corpus", str(corpus), *RUNS, *TINY, *checkpoints])
    assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 2

    out = tmp_path / "model"
    train_main(
        ["--corpus", str(corpus), "--out", str(out), "--holdout", "DB3_B", *TINY, *checkpoints]
    )
    manifest = json.loads((out / "manifest.json").read_text())
    training = manifest["training"]
    assert training["trained_with"].startswith("python -m models.train.sweep ")
    assert "2 runs as one grouped network" in training["trained_with"]
    assert training["code_commit"]
    assert training["held_out"] == "DB3_B" and "DB3_B" not in training["databases"]
    assert manifest["decoding"]["presence_threshold"] in THRESHOLDS
    assert manifest["decoding"]["nms_radius"] == 8.0  # the default rule tunes the threshold only
    assert manifest["metrics"]["decoding_chosen_on"] == ["DB1_B", "DB2_B", "DB4_B"]
    assert "DB3_B" in manifest["metrics"]["held_out"]
    assert manifest["sha256"] == _sha256(out / manifest["file"])
    assert manifest["int8"]["sha256"] == _sha256(out / manifest["int8"]["file"])

    image = np.asarray(Image.open(corpus / "fvc2002" / "DB3_B" / "101_1.tif"))
    for precision in ("fp32", "int8"):
        extractor = MinutiaeExtractor.load(out, precision=precision)
        assert isinstance(extractor.extract(image, 500.0), list)


def test_a_half_turn_export_records_it_and_sees_a_turned_image_as_the_same_print(
    tmp_path: Path,
) -> None:
    corpus = write_miniature_corpus(
        tmp_path / "corpus", ["DB1_B", "DB2_B", "DB3_B", "DB4_B"], seed=4
    )
    out = tmp_path / "model"
    checkpoints = ["--checkpoints", str(tmp_path / "checkpoints")]
    # a slack every decoding meets: the one agreeing best with the labels is taken
    half_turn = ["--test-time", "half-turn", "--decoding-rule", "f1-near-eer", "--eer-slack", "100"]
    train_main(["--corpus", str(corpus), "--out", str(out), *half_turn, *TINY, *checkpoints])
    manifest = json.loads((out / "manifest.json").read_text())
    assert "turned 180 degrees" in manifest["training"]["test_time"]
    # threshold and NMS radius were chosen together, from the whole grid
    choice = manifest["metrics"]["decoding_choice"]
    assert "within 100.0 points of the lowest" in choice["rule"]
    grid = choice["grid"]
    assert len(grid) == len(THRESHOLDS) * len(NMS_RADII)
    decoding = manifest["decoding"]
    best = max(grid.values(), key=lambda point: point["f1"])["f1"]
    assert grid[f"{decoding['presence_threshold']}/{decoding['nms_radius']:g}"]["f1"] == best

    # the export prepares its own input (models.train.preparation), which a half turn of an
    # image whose sides are whole cells leaves as it is
    assert manifest["input"]["preparation"] == "graph"
    session = MinutiaeExtractor.load(out).session
    image = np.random.default_rng(0).integers(0, 256, (1, 1, 48, 64), dtype=np.uint8)
    (heads,) = session.run(None, {"image": image})
    (turned,) = session.run(None, {"image": np.ascontiguousarray(image[:, :, ::-1, ::-1])})
    # seen turned, the same print: cells and offsets mirrored, directions reversed
    signs = np.array([1, -1, -1, -1, -1, 1, 1], dtype=np.float32)[None, :, None, None]
    np.testing.assert_allclose(turned, signs * heads[:, :, ::-1, ::-1], atol=1e-4)


def test_a_pair_export_records_its_partner_and_needs_it_finished_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write_miniature_corpus(
        tmp_path / "corpus", ["DB1_B", "DB2_B", "DB3_B", "DB4_B"], seed=5
    )
    checkpoints = ["--checkpoints", str(tmp_path / "checkpoints")]
    common = ["--corpus", str(corpus), "--holdout", "DB2_B", *TINY, *checkpoints]
    pair = ["--out", str(tmp_path / "pair"), "--test-time", "half-turn-pair"]

    with pytest.raises(SystemExit):
        train_main([*common, *pair, "--partner-synthetic", "2"])
    assert "partner run:" in capsys.readouterr().err
    assert not (tmp_path / "pair" / "manifest.json").exists()

    train_main([*common, "--out", str(tmp_path / "partner"), "--synthetic", "2", "--no-export"])
    # a budget every threshold meets: the highest one is taken
    budget = ["--decoding-rule", "eer-budget", "--eer-budget", "100"]
    train_main([*common, *pair, "--partner-synthetic", "2", *budget])
    manifest = json.loads((tmp_path / "pair" / "manifest.json").read_text())
    assert manifest["decoding"]["presence_threshold"] == max(THRESHOLDS)
    assert manifest["metrics"]["decoding_choice"]["rule"].endswith("(100.0 %)")
    training = manifest["training"]
    assert "partner network" in training["test_time"]
    assert training["partner"]["config"]["synthetic_images"] == 2
    assert training["partner"]["config"]["databases"] == training["databases"]
    assert training["config"]["synthetic_images"] == 0
    one_network = sum(p.numel() for p in MinutiaeNet(width=8).parameters())
    assert training["parameters"] == 2 * one_network
    assert MinutiaeExtractor.load(tmp_path / "pair").manifest.sha256 == manifest["sha256"]


def test_options_without_their_partner_option_or_rule_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--corpus", str(tmp_path), "--out", str(tmp_path / "model")]
    for wrong in (
        ["--test-time", "half-turn-pair"],
        ["--partner-synthetic", "800"],
        ["--test-time", "half-turn-pair", "--partner-synthetic", "0"],
    ):
        with pytest.raises(SystemExit):
            train_main([*out, *wrong])
    with pytest.raises(SystemExit):
        train_main([*out, "--decoding-rule", "eer-budget"])
    errors = capsys.readouterr().err
    assert errors.count("go together") == 3
    assert "the partner must differ" in errors
    with pytest.raises(SystemExit):
        train_main([*out, "--eer-slack", "0.5"])  # the default rule has no slack
    assert "--eer-slack is for --decoding-rule f1-near-eer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_main([*out, "--decoding-rule", "f1-near-eer", "--eer-slack", "-0.1"])
    assert "must not be negative" in capsys.readouterr().err


def test_each_decoding_rule_is_recorded_with_its_own_parameter_and_no_other() -> None:
    assert decoding_rule_text("eer", 0.005, None) == DECODING_RULES["eer"]
    assert "within 0.5 points of the lowest" in decoding_rule_text("f1-near-eer", 0.005, None)
    assert decoding_rule_text("eer-budget", 0.002, 1.5).endswith("(1.5 %)")
    assert all("{" not in decoding_rule_text(rule, 0.002, 1.5) for rule in DECODING_RULES)
