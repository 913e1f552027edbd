"""``kiosk-edge sensor list|info|test`` as a technician runs them, against the simulators."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from firmware_bridge.zfm_protocol import IMAGE_HEIGHT, IMAGE_WIDTH
from hil.simulator.device import ZfmDevice
from hil.simulator.pty_scanner import PtyScanner
from hil.simulator.script import FingerScript
from hil.usb.simulator import UsbSimulator
from hil.usb.testbed import unavailable_reason

needs_umockdev = pytest.mark.skipif(
    unavailable_reason() is not None, reason=str(unavailable_reason())
)


def kiosk_edge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )


def ridges() -> npt.NDArray[np.uint8]:
    y, x = np.mgrid[0:IMAGE_HEIGHT, 0:IMAGE_WIDTH]
    image: npt.NDArray[np.uint8] = (
        127.5 + 127.5 * np.sin(2 * np.pi * (x + 0.5 * y) / 9.0)
    ).astype(np.uint8)
    return image


@pytest.fixture
def usb() -> Iterator[UsbSimulator]:
    with UsbSimulator(auto_fingers=False, serial_number="BENCH42") as sim:
        yield sim


def usb_config(tmp_path: Path, sim: UsbSimulator) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'device_id = "bench"\nstate_dir = "{tmp_path}"\n[sensor]\nkind = "usb"\n'
        f"vendor_id = {sim.vendor_id}\nproduct_id = {sim.product_id}\ntimeout = 5.0\n"
    )
    return config


@needs_umockdev
def test_list_shows_the_attached_usb_sensor_with_its_serial_number_and_address(
    usb: UsbSimulator,
) -> None:
    proc = kiosk_edge("sensor", "list", "--json", env=usb.client_env())
    assert proc.returncode == 0, proc.stderr
    listed = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {
        "transport": "usb", "vendor_id": "1209", "product_id": "0001",
        "serial_number": "BENCH42", "port": "usb:001:002",
    }.items() <= listed[0].items()


@needs_umockdev
def test_list_with_nothing_attached_says_so_and_fails(usb: UsbSimulator) -> None:
    usb.unplug()
    proc = kiosk_edge("sensor", "list", env=usb.client_env())
    assert proc.returncode == 1
    assert "no supported sensor attached" in proc.stderr


@needs_umockdev
def test_info_reads_the_usb_sensors_parameters(usb: UsbSimulator, tmp_path: Path) -> None:
    proc = kiosk_edge("sensor", "info", "--config", str(usb_config(tmp_path, usb)),
                      env=usb.client_env())
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["transport"] == "usb" and info["serial_number"] == "BENCH42"
    assert info["packet_size"] == 128 and info["library_size"] == 300


@needs_umockdev
def test_test_captures_one_image_and_reports_its_quality_only(
    usb: UsbSimulator, tmp_path: Path
) -> None:
    usb.place(ridges())
    proc = kiosk_edge("sensor", "test", "--config", str(usb_config(tmp_path, usb)),
                      "--timeout", "30", env=usb.client_env())
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["width"], report["height"]) == (IMAGE_WIDTH, IMAGE_HEIGHT)
    assert report["rejected"] is None and report["quality"] > 0
    assert "pixels" not in report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_info_on_a_serial_sensor_and_a_missing_one(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    with PtyScanner(ZfmDevice(FingerScript()), link=tmp_path / "ttySIM0") as scanner:
        config.write_text(f'device_id = "bench"\nstate_dir = "{tmp_path}"\n'
                          f'[sensor]\nport = "{scanner.path}"\n')
        proc = kiosk_edge("sensor", "info", "--config", str(config))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["transport"] == "serial"
    proc = kiosk_edge("sensor", "info", "--config", str(config))
    assert proc.returncode == 1
    assert "cannot open serial port" in proc.stderr and "Traceback" not in proc.stderr
