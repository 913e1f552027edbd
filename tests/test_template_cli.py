"""``kiosk-edge template inspect|convert`` as a technician or validator runs them."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge.templates.formats import TemplateFormat, detect_format

FIXTURE = Path(__file__).parent / "fixtures" / "iso19794_2_2005" / "fvc2002_db1_101_1.iso"
TRUNCATED = Path(__file__).parent / "fixtures" / "iso19794_2_2005" / "invalid_truncated_1_byte.iso"


def kiosk_edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "template", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_inspect_prints_header_fields_and_one_line_per_minutia() -> None:
    result = kiosk_edge("inspect", str(FIXTURE))
    assert result.returncode == 0, result.stderr
    assert "standard: ISO/IEC 19794-2:2005" in result.stdout
    assert "width: 300" in result.stdout
    assert result.stdout.count(" quality ") == 25


def test_inspect_json_gives_every_minutia_with_its_angle_in_degrees() -> None:
    result = kiosk_edge("inspect", "--json", str(FIXTURE))
    description = json.loads(result.stdout)
    minutia = description["views"][0]["minutiae"][0]
    assert description["format"] == "iso2005"
    assert minutia["angle_degrees"] == pytest.approx(minutia["angle"] * 360 / 256, abs=1e-3)


def test_inspect_rejects_a_truncated_record_naming_the_field() -> None:
    result = kiosk_edge("inspect", str(TRUNCATED))
    assert result.returncode == 1
    assert "record length at offset 8" in result.stderr


@pytest.mark.parametrize("target", ["iso2011", "ansi378", "xyt"])
def test_convert_writes_the_target_format_privately_and_notes_losses(
    tmp_path: Path, target: str
) -> None:
    out = tmp_path / f"out.{target}"
    result = kiosk_edge("convert", str(FIXTURE), str(out), "--to", target)
    assert result.returncode == 0, result.stderr
    assert detect_format(out.read_bytes()) is TemplateFormat(target)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert ("note:" in result.stderr) == (target != "iso2011")


def test_xyt_converts_back_when_the_image_size_is_given(tmp_path: Path) -> None:
    xyt, iso = tmp_path / "f.xyt", tmp_path / "f.iso"
    assert kiosk_edge("convert", str(FIXTURE), str(xyt), "--to", "xyt").returncode == 0
    refused = kiosk_edge("convert", str(xyt), str(iso), "--to", "iso2005")
    assert refused.returncode == 1 and "image size" in refused.stderr
    result = kiosk_edge(
        "convert", str(xyt), str(iso), "--to", "iso2005", "--width", "300", "--height", "400"
    )
    assert result.returncode == 0, result.stderr
    assert detect_format(iso.read_bytes()) is TemplateFormat.ISO2005


@pytest.mark.parametrize("target", ["iso2011", "ansi378"])
def test_inspect_reads_every_binary_format_the_converter_writes(
    tmp_path: Path, target: str
) -> None:
    out = tmp_path / "record"
    assert kiosk_edge("convert", str(FIXTURE), str(out), "--to", target).returncode == 0
    result = kiosk_edge("inspect", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["format"] == target
