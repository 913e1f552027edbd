"""Configuration: TOML file plus KIOSK_* environment, with one clear line per bad field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import ConfigError, load_settings

GOOD = """
device_id = "kiosk-07"
state_dir = "/tmp/kiosk-state"

[sensor]
port = "/dev/ttyUSB0"
baudrate = 115200

[mqtt]
host = "hub.example"
port = 8883
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_a_valid_file_is_read_with_defaults_for_what_it_omits(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.device_id == "kiosk-07"
    assert settings.sensor.port == "/dev/ttyUSB0"
    assert settings.sensor.baudrate == 115200
    assert settings.sensor.packet_size == 128
    assert settings.mqtt.host == "hub.example"
    assert settings.outbox_path == Path("/tmp/kiosk-state/outbox.sqlite3")


def test_environment_overrides_one_nested_field_and_keeps_the_rest_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIOSK_MQTT__PORT", "1884")
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.mqtt.port == 1884
    assert settings.mqtt.host == "hub.example"


def test_every_bad_field_is_reported_by_name(tmp_path: Path) -> None:
    bad = GOOD.replace("baudrate = 115200", "baudrate = 12").replace("port = 8883", "port = 0")
    bad += '\n[quality]\nmin_contrast = "high"\nunknown_knob = 1\n'
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, bad))
    problems = "\n".join(info.value.problems)
    assert len(info.value.problems) == 4
    assert "sensor.baudrate" in problems
    assert "mqtt.port" in problems
    assert "quality.min_contrast" in problems
    assert "quality.unknown_knob" in problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("device_id = ", "not valid TOML"),
        ('device_id = "bad id with spaces"', "device_id"),
        ("", "device_id: Field required"),
        ('device_id = "k"\n[mqtt]\ntopic_prefix = "kiosk/#"', "mqtt.topic_prefix"),
    ],
)
def test_malformed_files_are_rejected_with_a_specific_reason(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert expected in str(info.value)


def test_a_missing_file_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "absent.toml")


def test_the_cli_prints_one_line_per_bad_field_and_exits_non_zero(tmp_path: Path) -> None:
    bad = GOOD.replace("baudrate = 115200", "baudrate = 12").replace("port = 8883", "port = 0")
    path = write(tmp_path, bad)
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "config-check", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert "Traceback" not in proc.stderr
