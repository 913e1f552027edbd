"""The synthetic finger generator: determinism, image format, and truthful minutiae."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge.minutiae import Minutia, MinutiaKind
from hil.fingers import QUALITIES, FingerGenerator, Impression, Quality
from hil.fingers.__main__ import main
from hil.fingers.raster import erode, gaussian_blur
from hil.fingers.thinning import crossing_number, thin

SEED = 1


@pytest.fixture(scope="module")
def generator() -> FingerGenerator:
    return FingerGenerator(SEED)


def _digest(impression: Impression) -> str:
    payload = impression.image.tobytes() + repr(impression.minutiae).encode()
    return hashlib.sha256(payload).hexdigest()


def _angle_gap(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def test_same_seed_and_ids_give_identical_bytes(generator: FingerGenerator) -> None:
    again = FingerGenerator(SEED)
    for quality in QUALITIES:
        first = generator.impression(0, 1, quality=quality)
        second = again.impression(0, 1, quality=quality)
        assert first.image.tobytes() == second.image.tobytes()
        assert first.minutiae == second.minutiae
    assert generator.finger(0).image.tobytes() == again.finger(0).image.tobytes()


def test_another_process_produces_identical_bytes(generator: FingerGenerator) -> None:
    script = (
        "import hashlib; from hil.fingers import FingerGenerator; "
        f"i = FingerGenerator({SEED}).impression(0, 1, quality='dry'); "
        "print(hashlib.sha256(i.image.tobytes() + repr(i.minutiae).encode()).hexdigest())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == _digest(generator.impression(0, 1, quality="dry"))


def test_different_seeds_give_different_fingers(generator: FingerGenerator) -> None:
    other = FingerGenerator(SEED + 1)
    assert not np.array_equal(generator.finger(0).ridges, other.finger(0).ridges)
    assert generator.impression(0, 0).image.tobytes() != other.impression(0, 0).image.tobytes()


def test_different_fingers_and_impressions_differ(generator: FingerGenerator) -> None:
    assert not np.array_equal(generator.finger(0).ridges, generator.finger(1).ridges)
    first, second = generator.impression(0, 0), generator.impression(0, 1)
    assert first.image.tobytes() != second.image.tobytes()


@pytest.mark.parametrize("quality", QUALITIES)
def test_impression_is_a_grey_image_of_the_requested_size(
    generator: FingerGenerator, quality: Quality
) -> None:
    impression = generator.impression(1, 0, width=320, height=360, ppi=500, quality=quality)
    image = impression.image
    assert image.dtype == np.uint8
    assert image.shape == (360, 320)
    assert impression.foreground.shape == (360, 320)
    assert impression.ppi == 500
    # Dark ridges on a light background: the finger is darker than what surrounds it, and the
    # ridges give real contrast inside it.
    inside = image[impression.foreground].astype(np.float64)
    outside = image[~impression.foreground].astype(np.float64)
    assert inside.mean() < outside.mean() - 20
    assert inside.std() > 15
    assert 0.2 < impression.foreground.mean() < 0.98


def test_default_impression_matches_the_sensor_frame(generator: FingerGenerator) -> None:
    image = generator.impression_image(0, 0)
    assert image.shape == (288, 256)
    assert image.tobytes() == generator.impression(0, 0).image.tobytes()


def test_master_has_a_plausible_number_of_minutiae_inside_the_finger(
    generator: FingerGenerator,
) -> None:
    for finger_id in range(4):
        master = generator.finger(finger_id)
        assert 20 <= len(master.minutiae) <= 80, master.pattern_class
        for m in master.minutiae:
            assert master.mask[round(m.y), round(m.x)]
            assert 0.0 <= m.angle < 360.0
            assert m.kind in (MinutiaKind.ENDING, MinutiaKind.BIFURCATION)
        kinds = {m.kind for m in master.minutiae}
        assert kinds == {MinutiaKind.ENDING, MinutiaKind.BIFURCATION}


def test_full_size_impression_has_a_plausible_number_of_minutiae(
    generator: FingerGenerator,
) -> None:
    counts = [len(generator.impression(f, 0, width=400, height=400).minutiae) for f in range(4)]
    # Plain arches carry fewer minutiae than loops and whorls; finger 3 is one.
    assert all(15 <= count <= 80 for count in counts), counts
    assert np.mean(counts) >= 25, counts


@pytest.mark.parametrize("quality", QUALITIES)
def test_impression_minutiae_lie_inside_the_image_and_the_foreground(
    generator: FingerGenerator, quality: Quality
) -> None:
    for impression_id in range(2):
        impression = generator.impression(2, impression_id, quality=quality)
        assert impression.minutiae
        height, width = impression.image.shape
        for m in impression.minutiae:
            assert 0 <= m.x <= width - 1 and 0 <= m.y <= height - 1
            assert impression.foreground[round(m.y), round(m.x)]


def test_impressions_of_one_finger_share_minutiae_through_the_known_transforms(
    generator: FingerGenerator,
) -> None:
    a = generator.impression(3, 0, width=320, height=320)
    b = generator.impression(3, 1, width=320, height=320)
    inner = erode(b.foreground, 16)
    shared = 0
    for m in a.minutiae:
        predicted = _carry(m, a, b)
        if not (0 <= predicted.x < 320 and 0 <= predicted.y < 320):
            continue
        if not inner[round(predicted.y), round(predicted.x)]:
            continue
        match = min(b.minutiae, key=lambda n: math.hypot(n.x - predicted.x, n.y - predicted.y))
        assert math.hypot(match.x - predicted.x, match.y - predicted.y) < 0.5
        assert match.kind == m.kind
        assert _angle_gap(match.angle, predicted.angle) < 2.0
        shared += 1
    assert shared >= 15
    assert shared >= 0.5 * min(len(a.minutiae), len(b.minutiae))


def _carry(m: Minutia, source: Impression, target: Impression) -> Minutia:
    """Move a minutia of one impression into another through the master print."""
    step = 3.0
    xs = np.array([m.x, m.x + step * math.cos(math.radians(m.angle))])
    ys = np.array([m.y, m.y - step * math.sin(math.radians(m.angle))])
    mx, my = source.placement.to_master(xs, ys)
    tx, ty = target.placement.to_image(mx, my)
    angle = math.degrees(math.atan2(-(ty[1] - ty[0]), tx[1] - tx[0])) % 360.0
    return Minutia(float(tx[0]), float(ty[0]), angle, m.kind, m.quality)


def test_true_minutiae_sit_on_ridge_ends_and_forks_seen_in_the_image(
    generator: FingerGenerator,
) -> None:
    """An independent look: skeletonise the rendered image and find a feature at each minutia.

    Random points serve as the control, so a skeleton full of noise cannot pass.
    """
    rng = np.random.default_rng(0)
    for finger_id in range(3):
        impression = generator.impression(finger_id, 0, width=300, height=300)
        pixels = impression.image.astype(np.float32)
        ridges = (pixels < gaussian_blur(pixels, 5.0)) & impression.foreground
        crossings = crossing_number(thin(ridges))
        features = np.argwhere((crossings == 1) | (crossings >= 3)).astype(np.float64)

        def near(x: float, y: float, features: np.ndarray = features) -> bool:
            return bool(np.hypot(features[:, 1] - x, features[:, 0] - y).min() <= 7.0)

        hits = np.mean([near(m.x, m.y) for m in impression.minutiae])
        candidates = np.argwhere(erode(impression.foreground, 8))
        control = candidates[rng.choice(len(candidates), size=200)]
        chance = np.mean([near(float(x), float(y)) for y, x in control])
        assert hits >= 0.85, (finger_id, hits)
        assert chance <= 0.35, (finger_id, chance)


def test_dry_and_wet_skin_change_ridge_thickness(generator: FingerGenerator) -> None:
    ink = {}
    for quality in ("dry", "good", "wet"):
        impression = generator.impression(1, 0, width=300, height=300, quality=quality)
        pixels = impression.image.astype(np.float64)
        inner = erode(impression.foreground, 20)
        background = np.median(pixels[~impression.foreground])
        dark = pixels[inner] < background - 0.5 * (background - pixels[inner].min())
        ink[quality] = dark.mean()
    assert ink["dry"] < ink["good"] < ink["wet"]


def test_same_placement_for_every_quality(generator: FingerGenerator) -> None:
    good = generator.impression(0, 2, quality="good")
    wet = generator.impression(0, 2, quality="wet")
    assert good.placement == wet.placement
    assert good.minutiae == wet.minutiae


def test_resolution_scales_the_print(generator: FingerGenerator) -> None:
    at_500 = generator.impression(0, 0, width=300, height=300, ppi=500)
    at_1000 = generator.impression(0, 0, width=600, height=600, ppi=1000)
    assert at_1000.ppi == 1000
    assert len(at_1000.minutiae) == pytest.approx(len(at_500.minutiae), abs=3)
    for m in at_500.minutiae[:10]:
        twin = min(at_1000.minutiae, key=lambda n: math.hypot(n.x - 2 * m.x, n.y - 2 * m.y))
        assert math.hypot(twin.x - (2 * m.x + 0.5), twin.y - (2 * m.y + 0.5)) < 1.5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda g: g.finger(-1), "finger_id"),
        (lambda g: g.impression(0, -2), "impression_id"),
        (lambda g: g.impression(0, 0, width=4), "image size"),
        (lambda g: g.impression(0, 0, ppi=90.0), "ppi"),
        (lambda g: g.impression(0, 0, quality="smudged"), "quality"),
    ],
)
def test_invalid_requests_are_rejected_with_a_named_reason(call: object, message: str) -> None:
    generator = FingerGenerator(SEED)
    with pytest.raises(ValueError, match=message):
        call(generator)  # type: ignore[operator]


def test_invalid_generator_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="seed"):
        FingerGenerator(-1)
    with pytest.raises(ValueError, match="period_range"):
        FingerGenerator(SEED, period_range=(11.0, 8.0))


def test_command_writes_pngs_and_their_true_minutiae(tmp_path: Path) -> None:
    argv = ["--seed", "3", "--fingers", "1", "--impressions", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    document = json.loads((tmp_path / "minutiae.json").read_text())
    assert document["seed"] == 3
    [finger] = document["fingers"]
    generator = FingerGenerator(3)
    for entry in finger["impressions"]:
        path = tmp_path / entry["file"]
        assert path.stat().st_mode & 0o777 == 0o600
        pixels = np.asarray(Image.open(path))
        expected = generator.impression(0, entry["impression_id"])
        assert pixels.tobytes() == expected.image.tobytes()
        assert len(entry["minutiae"]) == len(expected.minutiae)
        assert {m["kind"] for m in entry["minutiae"]} <= {"ending", "bifurcation"}
    assert (tmp_path / finger["master"]["file"]).exists()
