"""The shipped int8 model: loaded and checked like the fp32 one, chosen by config or CLI flag."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from int8_agreement import agreement, synthetic_prints
from PIL import Image

import models
from edge.config import ConfigError, load_settings
from edge.extraction import (
    ManifestError,
    MinutiaeExtractor,
    ModelCorruptError,
    ModelMissingError,
)
from edge.templates import iso19794_2_2005

SHIPPED = Path(models.__file__).parent
MANIFEST = json.loads((SHIPPED / "manifest.json").read_text())
INT8_FILE = MANIFEST["int8"]["file"]


@pytest.fixture(scope="module")
def fp32() -> MinutiaeExtractor:
    return MinutiaeExtractor.load()


@pytest.fixture(scope="module")
def int8() -> MinutiaeExtractor:
    return MinutiaeExtractor.load(precision="int8")


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    directory = tmp_path / "models"
    directory.mkdir()
    for name in ("manifest.json", MANIFEST["file"], INT8_FILE):
        shutil.copy(SHIPPED / name, directory / name)
    return directory


def _edit_int8(directory: Path, **changes: object) -> None:
    path = directory / "manifest.json"
    content = json.loads(path.read_text())
    content["int8"].update(changes)
    path.write_text(json.dumps(content))


def _without_int8(directory: Path) -> None:
    path = directory / "manifest.json"
    content = json.loads(path.read_text())
    del content["int8"]
    path.write_text(json.dumps(content))


def kiosk_edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_the_shipped_int8_model_matches_its_manifest_hash_and_says_so_in_its_version(
    fp32: MinutiaeExtractor, int8: MinutiaeExtractor
) -> None:
    data = (SHIPPED / INT8_FILE).read_bytes()
    assert hashlib.sha256(data).hexdigest() == MANIFEST["int8"]["sha256"]
    assert MANIFEST["int8"]["quantised_from"] == MANIFEST["sha256"]
    assert int8.precision == "int8" and fp32.precision == "fp32"
    assert int8.version == f"{MANIFEST['name']}/{MANIFEST['version']}+int8"
    assert fp32.version == f"{MANIFEST['name']}/{MANIFEST['version']}"


def test_int8_finds_nearly_the_same_minutiae_as_fp32_on_synthetic_prints(
    fp32: MinutiaeExtractor, int8: MinutiaeExtractor
) -> None:
    result = agreement(fp32, int8)
    assert result.reference > 20 * len(synthetic_prints())  # enough minutiae to judge by
    assert result.nearly_same, result


def test_a_tampered_int8_model_fails_the_hash_check(model_copy: Path) -> None:
    path = model_copy / INT8_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelCorruptError, match=rf"{INT8_FILE}.*sha256"):
        MinutiaeExtractor.load(model_copy, precision="int8")
    MinutiaeExtractor.load(model_copy)  # the fp32 model is not affected


def test_a_manifest_without_int8_says_there_is_no_int8_model(model_copy: Path) -> None:
    _without_int8(model_copy)
    with pytest.raises(ModelMissingError, match="lists no int8 model"):
        MinutiaeExtractor.load(model_copy, precision="int8")
    assert MinutiaeExtractor.load(model_copy).precision == "fp32"


def test_a_missing_int8_file_is_reported_by_name(model_copy: Path) -> None:
    (model_copy / INT8_FILE).unlink()
    with pytest.raises(ModelMissingError, match=rf"{INT8_FILE} named in the manifest is missing"):
        MinutiaeExtractor.load(model_copy, precision="int8")


def test_an_int8_model_quantised_from_another_fp32_model_is_refused(model_copy: Path) -> None:
    _edit_int8(model_copy, quantised_from="0" * 64)
    with pytest.raises(ManifestError, match="quantised from another fp32 model"):
        MinutiaeExtractor.load(model_copy, precision="int8")


@pytest.mark.parametrize(
    ("field", "value"),
    [("sha256", "not-a-hash"), ("file", "../elsewhere.onnx"), ("quantised_from", None)],
)
def test_a_malformed_int8_entry_names_its_field(
    model_copy: Path, field: str, value: object
) -> None:
    _edit_int8(model_copy, **{field: value})
    with pytest.raises(ManifestError, match=rf"int8\.{field}"):
        MinutiaeExtractor.load(model_copy, precision="int8")
    assert MinutiaeExtractor.load(model_copy).precision == "fp32"  # the fp32 model still loads


def test_an_int8_entry_that_is_not_an_object_is_malformed_and_leaves_fp32_alone(
    model_copy: Path,
) -> None:
    path = model_copy / "manifest.json"
    content = json.loads(path.read_text())
    content["int8"] = "minutiae.int8.onnx"
    path.write_text(json.dumps(content))
    with pytest.raises(ManifestError, match=r"int8: Input should be a valid dictionary"):
        MinutiaeExtractor.load(model_copy, precision="int8")
    assert MinutiaeExtractor.load(model_copy).precision == "fp32"


def test_config_chooses_the_precision_and_rejects_any_other(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('device_id = "kiosk-07"\n')
    assert load_settings(path).model.precision == "fp32"
    path.write_text('device_id = "kiosk-07"\n[model]\nprecision = "int8"\n')
    assert load_settings(path).model.precision == "int8"
    path.write_text('device_id = "kiosk-07"\n[model]\nprecision = "fp16"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert len(caught.value.problems) == 1 and caught.value.problems[0].startswith(
        "model.precision:"
    )


def test_kiosk_edge_extract_with_precision_int8_writes_a_record(tmp_path: Path) -> None:
    impression = synthetic_prints()[0]
    image = tmp_path / "finger.png"
    Image.fromarray(impression.image).save(image)
    out = tmp_path / "finger.iso"
    proc = kiosk_edge("extract", str(image), "-o", str(out), "--precision", "int8")
    assert proc.returncode == 0, proc.stderr
    int8 = MinutiaeExtractor.load(precision="int8")
    record = iso19794_2_2005.decode(out.read_bytes())
    assert len(record.views[0].minutiae) == len(int8.extract(impression.image, impression.ppi))


def test_kiosk_edge_extract_int8_without_an_int8_model_fails_with_one_line(
    model_copy: Path, tmp_path: Path
) -> None:
    _without_int8(model_copy)
    image = tmp_path / "finger.png"
    Image.fromarray(synthetic_prints()[0].image).save(image)
    proc = kiosk_edge(
        "extract", str(image), "-o", str(tmp_path / "x.iso"), "--model-dir", str(model_copy),
        "--precision", "int8",
    )  # fmt: skip
    assert proc.returncode == 1
    assert "lists no int8 model" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["run", "capture"])
def test_the_daemon_and_capture_load_the_configured_precision(
    command: str, model_copy: Path, tmp_path: Path
) -> None:
    # Without an int8 model, asking for one fails at model load, before any sensor is opened.
    _without_int8(model_copy)
    config = tmp_path / "config.toml"
    config.write_text(
        f'device_id = "kiosk-07"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[model]\ndirectory = "{model_copy}"\nprecision = "int8"\n'
    )
    proc = kiosk_edge(command, "--config", str(config))
    assert proc.returncode == 1
    assert "lists no int8 model" in proc.stderr and "Traceback" not in proc.stderr
