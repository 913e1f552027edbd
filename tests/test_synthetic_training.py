"""Synthetic training data: seeded plans, stores without pixels, and exact regeneration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.fingers import QUALITIES, FingerGenerator
from models.train.data import to_target_ppi
from models.train.label_store import LabelSet, LabelStoreError, pixels_sha256, training_rows
from models.train.synthetic import (
    SENSORS,
    SUMMARY_FILE,
    TRUTH_FILE,
    Capture,
    main,
    plan,
    synthetic_raw_images,
    truth_rows,
)


def test_the_same_seed_plans_the_same_captures() -> None:
    assert plan(4, 6, 3) == plan(4, 6, 3)
    assert plan(4, 6, 3) != plan(5, 6, 3)


def test_a_plan_spreads_over_every_sensor_and_quality() -> None:
    captures = plan(0, 40, 4)
    assert {(c.width, c.height, c.ppi) for c in captures} == set(SENSORS)
    assert {c.quality for c in captures} == set(QUALITIES)
    assert [(c.finger, c.impression) for c in captures[:5]] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 0),
    ]


def test_a_capture_name_parses_back_to_the_same_capture() -> None:
    for capture in plan(12, 3, 2):
        assert Capture.parse(capture.name, capture.ppi) == capture


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1/2/3/good",
        "1/2/3/greasy/300x300",
        "1/2/3/good/300x300/x",
        "-1/2/3/good/300x300",
        "1/2/3/good/3x300",
        "1/2/3/good/300 x300",
        "01/2/3/good/300x300",
        "1/2/3/good/10x300",
        "1/2/3/good/300x9999",
    ],
)
def test_a_malformed_capture_name_is_rejected_by_name(name: str) -> None:
    with pytest.raises(LabelStoreError, match=r"synthetic image name|quality|generator renders"):
        Capture.parse(name, 500.0)


@given(st.text(max_size=40))
def test_capture_parsing_never_fails_any_other_way(name: str) -> None:
    try:
        capture = Capture.parse(name, 500.0)
    except LabelStoreError:
        return
    assert capture.name == name


def test_a_store_renders_back_into_the_images_and_minutiae_it_was_made_from(
    tmp_path: Path,
) -> None:
    main(["--seed", "9", "--fingers", "1", "--impressions", "2", "--out", str(tmp_path)])
    store = LabelSet.load(tmp_path / TRUTH_FILE)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["impressions"] == 2 and "leader_vs_truth" not in summary
    generator = FingerGenerator(9)
    images = list(synthetic_raw_images(store))
    for capture, image in zip(plan(9, 1, 2), images, strict=True):
        fresh = capture.render(generator)
        np.testing.assert_array_equal(image.pixels, fresh.image)
        np.testing.assert_allclose(image.minutiae, training_rows(truth_rows(fresh)), atol=1e-4)
        assert image.pixels.shape == (capture.height, capture.width)
        assert image.ppi == capture.ppi and image.database == "SYNTH"
        resampled = to_target_ppi(image)
        assert len(resampled.minutiae) == len(image.minutiae)
    assert sum(len(i.minutiae) for i in images) > 0


def test_renderings_are_kept_in_the_cache_read_back_and_made_again_when_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    main(["--seed", "9", "--fingers", "1", "--impressions", "2", "--out", str(tmp_path)])
    store = LabelSet.load(tmp_path / TRUTH_FILE)
    cache = tmp_path / "renders"
    rendered = [i.pixels for i in synthetic_raw_images(store, cache=cache)]
    kept = sorted(cache.glob("*.npy"))
    assert [p.stem for p in kept] == sorted(str(h) for h in store.image_sha256)
    # damage one kept rendering: it must be noticed and rendered again, not trusted
    np.save(kept[0], np.zeros((4, 4), np.uint8))
    again = [i.pixels for i in synthetic_raw_images(store, cache=cache)]
    for before, after in zip(rendered, again, strict=True):
        np.testing.assert_array_equal(before, after)

    def no_rendering(*_: object) -> None:
        raise AssertionError("rendered although the cache holds the image")

    monkeypatch.setattr("models.train.synthetic.Capture.render", no_rendering)
    cached = [i.pixels for i in synthetic_raw_images(store, cache=cache)]
    for before, after in zip(rendered, cached, strict=True):
        np.testing.assert_array_equal(before, after)


def test_a_store_whose_images_the_generator_no_longer_makes_is_refused() -> None:
    capture = plan(9, 1, 1)[0]
    fake = np.zeros((capture.height, capture.width), np.uint8)
    store = LabelSet.build(
        [(capture.name, pixels_sha256(fake), capture.ppi, np.zeros((0, 5), np.float32))]
    )
    with pytest.raises(LabelStoreError, match="renders other pixels"):
        list(synthetic_raw_images(store))


def test_the_committed_synthetic_store_still_renders_its_first_impression() -> None:
    """Generator changes that would silently misalign the committed labels fail here."""
    path = Path(__file__).resolve().parents[1] / "models" / "train" / "labels" / TRUTH_FILE
    if not path.exists():
        pytest.skip("no committed synthetic labels")
    store = LabelSet.load(path)
    first = LabelSet.build(
        [(str(store.names[0]), str(store.image_sha256[0]), float(store.ppi[0]), store.rows(0))]
    )
    (image,) = synthetic_raw_images(first)
    assert len(image.minutiae) == len(store.rows(0))
