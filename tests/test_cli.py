"""The kiosk-edge command as technicians use it: extract, capture, config-check."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.cli import stop_on_signal
from edge.templates import iso19794_2_2005
from edge.templates.xyt import read_xyt
from hil.fingers import FingerGenerator
from hil.simulator import FingerScript, PtyScanner, ZfmDevice


def kiosk_edge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def finger_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    directory = tmp_path_factory.mktemp("images")
    generator = FingerGenerator(seed=3)
    paths = []
    for finger in range(3):
        path = directory / f"finger{finger}.png"
        Image.fromarray(generator.impression_image(finger, 0, 320, 360)).save(path)
        paths.append(path)
    return paths


def test_extract_writes_an_iso_record_for_one_image(
    finger_images: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "one.iso"
    proc = kiosk_edge("extract", str(finger_images[0]), "-o", str(out), "--finger", "2")
    assert proc.returncode == 0, proc.stderr
    record = iso19794_2_2005.decode(out.read_bytes())
    assert (record.width, record.height) == (320, 360)
    assert record.views[0].finger_position == 2
    assert len(record.views[0].minutiae) > 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_extract_of_several_images_writes_one_file_each_and_times_each(
    finger_images: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "xyt"
    proc = kiosk_edge("extract", *map(str, finger_images), "-o", str(out), "--format", "xyt",
                      "--timings")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(p) for p in finger_images]
    for line, path in zip(lines, finger_images, strict=True):
        assert line["extract_ms"] > 0
        minutiae = read_xyt((out / f"{path.stem}.xyt").read_text(), height=360)
        assert len(minutiae) == line["minutiae"]
        assert all(0 <= m.x < 320 and 0 <= m.y < 360 for m in minutiae)


def test_extract_reports_an_unreadable_image_and_carries_on(
    finger_images: list[Path], tmp_path: Path
) -> None:
    bogus = tmp_path / "not-an-image.png"
    bogus.write_bytes(b"\x89PNG but not really")
    out = tmp_path / "out"
    proc = kiosk_edge("extract", str(bogus), str(finger_images[0]), "-o", str(out))
    assert proc.returncode == 1
    assert "not-an-image.png: cannot read image" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (out / f"{finger_images[0].stem}.iso").exists()


def test_extract_with_a_corrupt_model_fails_with_one_clear_line(
    finger_images: list[Path], tmp_path: Path
) -> None:
    models = Path(__file__).resolve().parents[1] / "models"
    broken = tmp_path / "models"
    broken.mkdir()
    (broken / "manifest.json").write_bytes((models / "manifest.json").read_bytes())
    model = bytearray((models / "minutiae.onnx").read_bytes())
    model[len(model) // 2] ^= 0xFF
    (broken / "minutiae.onnx").write_bytes(bytes(model))
    proc = kiosk_edge("extract", str(finger_images[0]), "-o", str(tmp_path / "x.iso"),
                      "--model-dir", str(broken))
    assert proc.returncode == 1
    assert "sha256" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture
def scanner(tmp_path: Path) -> Iterator[PtyScanner]:
    generator = FingerGenerator(seed=5)
    script = FingerScript(lambda i: generator.impression_image(i, 0))
    with PtyScanner(ZfmDevice(script), link=tmp_path / "ttySIM0") as running:
        yield running


def test_capture_takes_one_finger_from_the_configured_sensor_to_png_and_template(
    scanner: PtyScanner, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'device_id = "bench"\nstate_dir = "{tmp_path}"\n'
                      f'[sensor]\nport = "{scanner.path}"\n[quality]\nmin_minutiae = 0\n')
    prefix = tmp_path / "captures" / "right-thumb"
    proc = kiosk_edge("capture", "--config", str(config), "-o", str(prefix), "--finger", "1",
                      "--timeout", "30")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    with Image.open(prefix.with_suffix(".png")) as png:
        assert png.size == (256, 288)
        captured = np.asarray(png)
    assert captured.std() > 10
    record = iso19794_2_2005.decode(prefix.with_suffix(".iso").read_bytes())
    assert record.views[0].finger_position == 1
    assert len(record.views[0].minutiae) == report["minutiae"]
    for suffix in (".png", ".iso"):
        assert stat.S_IMODE(prefix.with_suffix(suffix).stat().st_mode) == 0o600


def test_capture_with_no_sensor_says_so_without_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'device_id = "bench"\n[sensor]\nport = "{tmp_path}/ttyNOPE"\n')
    proc = kiosk_edge("capture", "--config", str(config), "-o", str(tmp_path / "c"))
    assert proc.returncode == 1
    assert "sensor" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_stop_signal_that_lands_inside_the_wait_on_the_stop_event_still_stops() -> None:
    stop = threading.Event()
    on_signal = stop_on_signal(stop)

    def main_thread_inside_wait() -> None:
        # Event.wait holds the event's lock for a moment; a signal can arrive right then, and
        # its handler runs on that same thread.
        with stop._cond:  # type: ignore[attr-defined]
            on_signal(signal.SIGTERM, None)

    thread = threading.Thread(target=main_thread_inside_wait, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the handler deadlocked on the event's lock"
    assert stop.wait(10)
