"""``kiosk-edge an2k build|inspect`` as a technician or validator runs them."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.an2k import transaction
from hil.fingers import FingerGenerator

pytest.importorskip("_wsq")

TEMPLATE = Path(__file__).parent / "fixtures" / "iso19794_2_2005" / "fvc2002_db1_101_1.iso"
SPEC = """
[transaction]
tot = "CAR"
dai = "WVIAFIS0Z"
ori = "NY0303000"
tcn = "KIOSK07-0001"
date = 2026-11-28
domain = ["EBTS", "11.1"]

[descriptive]
"018" = "DOE,JOHN"
"022" = ["19800101"]

[[image]]
finger = 13
file = "slap.png"
quality = { "2" = 3, "3" = 2 }
amputated = { "5" = "XX" }
segments = [[2, 1, 250, 5, 280]]
device_mode = "CONTROLLED"

[[minutiae]]
finger = 2
file = "index.iso"
"""


def kiosk_edge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "an2k", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    generator = FingerGenerator(seed=8)
    Image.fromarray(generator.impression_image(0, 0)).save(tmp_path / "index.png")
    slap = np.hstack([generator.impression_image(i, 0) for i in range(1, 5)])
    Image.fromarray(slap).save(tmp_path / "slap.png")
    shutil.copy(TEMPLATE, tmp_path / "index.iso")
    (tmp_path / "booking.toml").write_text(SPEC)
    return tmp_path


def test_build_from_toml_and_flags_then_inspect_as_json(workdir: Path) -> None:
    built = kiosk_edge(
        "build", "--spec", "booking.toml", "-o", "out.an2", "--image", "2=index.png",
        "--field", "2.024=M", cwd=workdir,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    out = workdir / "out.an2"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    read = transaction.read(out.read_bytes())
    assert [i.finger_position for i in read.images] == [13, 2]
    assert read.images[0].amputations == ((5, "XX"),)
    assert len(read.minutiae[0].minutiae) == 25
    inspected = kiosk_edge("inspect", "--json", "out.an2", cwd=workdir)
    description = json.loads(inspected.stdout)
    assert description["type1"]["TCN"] == "KIOSK07-0001"
    assert description["type2"][0]["2.024"] == [["M"]]
    assert 0.3 < description["type14"][1]["bits_per_pixel"] < 0.9


def test_build_from_flags_alone(workdir: Path) -> None:
    built = kiosk_edge(
        "build", "-o", "flags.an2", "--tot", "CAR", "--dai", "D", "--ori", "O", "--tcn", "T",
        "--image", "7=index.png", "--impression", "1", "--minutiae", "7=index.iso", cwd=workdir,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    read = transaction.read((workdir / "flags.an2").read_bytes())
    assert read.images[0].impression_type == 1 and read.minutiae[0].finger_position == 7


def test_build_without_mandatory_type1_fields_fails_naming_them(workdir: Path) -> None:
    built = kiosk_edge("build", "-o", "x.an2", "--tot", "CAR", cwd=workdir)
    assert built.returncode == 1 and "dai" in built.stderr
    assert not (workdir / "x.an2").exists()


def test_inspect_rejects_a_truncated_transaction(workdir: Path) -> None:
    kiosk_edge("build", "--spec", "booking.toml", "-o", "out.an2", cwd=workdir)
    data = (workdir / "out.an2").read_bytes()
    (workdir / "cut.an2").write_bytes(data[:-10])
    inspected = kiosk_edge("inspect", "cut.an2", cwd=workdir)
    assert inspected.returncode == 1 and "offset" in inspected.stderr
