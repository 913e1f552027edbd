"""Distillation: refining cycles that also learn a finished network's half-turn averaged heads."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")  # the train extra; the kiosk's own test environment lacks it

import torch
from random_training_images import random_training_images

from models.train.augment import ImageBank, make_batch
from models.train.loop import (
    TrainConfig,
    UnfinishedRunError,
    distillation_loss,
    load_teacher,
    step_losses,
    train,
)
from models.train.net import HalfTurnAverage, HalfTurnTeacher, MinutiaeNet, join
from models.train.recipe import add_recipe_arguments, run_checkpoints

WIDTH = 8


def _config(databases: tuple[str, ...] = ("DB1_B",), **changes: Any) -> TrainConfig:
    config = TrainConfig(3, 2, 32, 1e-3, 5, WIDTH, databases, "corpus", 0, 0.0, "basic")
    return replace(config, **changes)


def _taught(**changes: Any) -> TrainConfig:
    """Three steps, two refining cycles of two steps; the last one taught by ``t.pt``."""
    taught = {"refine_steps": 2, "refine_cycles": 2, "teacher": "t.pt", "distill": 1.0}
    return _config(**{**taught, "distill_cycles": 1, **changes})


def test_a_student_that_matches_its_teacher_costs_nothing() -> None:
    teacher = torch.randn(2, 7, 4, 4)
    loss = distillation_loss(teacher.clone(), teacher)
    assert loss.shape == (1,) and float(loss) == pytest.approx(0.0, abs=1e-6)


def test_a_student_is_pulled_towards_its_teacher_on_every_head_and_the_teacher_not_at_all() -> None:
    student = torch.randn(2, 7, 4, 4, requires_grad=True)
    teacher = torch.randn(2, 7, 4, 4, requires_grad=True)
    loss = distillation_loss(student, teacher)
    assert float(loss.detach()) > 0
    torch.autograd.backward(loss.sum())
    assert student.grad is not None and teacher.grad is None
    for channel in range(7):
        assert student.grad[:, channel].abs().sum() > 0, channel
    # one step down the gradient brings the student closer
    closer = distillation_loss((student - 0.1 * student.grad).detach(), teacher.detach())
    assert float(closer) < float(loss.detach())


def test_a_grouped_networks_distillation_loss_is_each_networks_own() -> None:
    student, teacher = torch.randn(3, 14, 4, 4), torch.randn(3, 14, 4, 4)
    together = distillation_loss(student, teacher, models=2)
    for k in range(2):
        alone = distillation_loss(student[:, 7 * k : 7 * k + 7], teacher[:, 7 * k : 7 * k + 7])
        assert torch.allclose(together[k], alone[0], atol=1e-6)


def test_the_teacher_sees_each_crop_as_the_half_turn_export_sees_an_image() -> None:
    torch.manual_seed(3)
    nets = [MinutiaeNet(WIDTH).eval() for _ in range(2)]
    crops = torch.randn(3, 1, 32, 40)
    teacher = HalfTurnTeacher(nets[0])
    exported = HalfTurnAverage(nets[0]).eval()
    heads = teacher(crops)
    for i in range(3):
        assert torch.allclose(heads[i : i + 1], exported(crops[i : i + 1]), atol=1e-5)
    grouped = MinutiaeNet(WIDTH, models=2)
    grouped.load_state_dict(join([n.state_dict() for n in nets]))
    both = HalfTurnTeacher(grouped)(crops.expand(3, 2, 32, 40).contiguous())
    for k in range(2):
        alone = HalfTurnTeacher(nets[k])(crops)
        assert torch.allclose(both[:, 7 * k : 7 * k + 7], alone, atol=1e-5)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_only_the_last_refining_cycles_are_distilled() -> None:
    once, twice = _taught(), _taught(distill_cycles=2)
    assert [once.distilling_at(s) for s in range(7)] == [False] * 5 + [True] * 2
    assert [twice.distilling_at(s) for s in range(7)] == [False] * 3 + [True] * 4


def test_a_distilled_cycle_goes_on_from_the_plain_run_with_one_cycle_fewer() -> None:
    plain = _config(refine_steps=2, refine_cycles=1)
    assert _taught().previous == plain
    twice = _taught(distill_cycles=2)
    assert twice.previous == _taught(refine_cycles=1)  # still taught, one cycle fewer
    assert twice.previous.previous == _config()


@pytest.mark.parametrize(
    "changes",
    [
        {"distill": 0.0},
        {"teacher": ""},
        {"distill_cycles": 0},
        {"distill_cycles": 3},
        {"refine_steps": 0, "refine_cycles": 1},
    ],
)
def test_a_teacher_needs_a_weight_and_cycles_of_the_run(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _taught(**changes)


def _finished(tmp_path: Path, name: str, databases: tuple[str, ...], steps: int = 2) -> None:
    config = _config(databases, steps=steps)
    images = [i for d in databases for i in random_training_images(d, 2, 1)]
    train(images, config, tmp_path / name, "cpu")


def test_a_teacher_that_trained_on_the_held_out_database_is_refused(tmp_path: Path) -> None:
    _finished(tmp_path, "t.pt", ("DB1_B", "DB2_B"))
    with pytest.raises(ValueError, match="DB2_B"):
        load_teacher([_taught()], tmp_path)
    both = _taught(databases=("DB1_B", "DB2_B"))
    assert isinstance(load_teacher([both], tmp_path), HalfTurnTeacher)


def test_a_teacher_on_fewer_databases_than_its_student_is_accepted(tmp_path: Path) -> None:
    _finished(tmp_path, "t.pt", ("DB1_B",))
    assert load_teacher([_taught(databases=("DB1_B", "DB3_B"))], tmp_path) is not None


def test_a_missing_or_unfinished_teacher_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnfinishedRunError, match="does not exist"):
        load_teacher([_taught()], tmp_path)
    _finished(tmp_path, "t.pt", ("DB1_B",))
    state = torch.load(tmp_path / "t.pt", weights_only=False)
    state["step"] = 1
    torch.save(state, tmp_path / "t.pt")
    with pytest.raises(UnfinishedRunError, match="step 1 of 2"):
        load_teacher([_taught()], tmp_path)


def test_runs_trained_together_all_learn_from_teachers_of_one_width_or_none(
    tmp_path: Path,
) -> None:
    assert load_teacher([_config(), _config()], tmp_path) is None
    with pytest.raises(ValueError, match="or none"):
        load_teacher([_taught(), _config(refine_steps=2, refine_cycles=2)], tmp_path)
    _finished(tmp_path, "t.pt", ("DB1_B",))
    wide = replace(_config(steps=2), width=WIDTH + 4)
    train(random_training_images("DB1_B", 2, 1), wide, tmp_path / "wide.pt", "cpu")
    with pytest.raises(ValueError, match="width"):
        load_teacher([_taught(), _taught(teacher="wide.pt")], tmp_path)


def test_a_distilled_step_without_a_teacher_is_an_error() -> None:
    bank = ImageBank.build(random_training_images("DB1_B", 2, 1))
    batch = make_batch(bank, 2, 32, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="no teacher"):
        step_losses(MinutiaeNet(WIDTH), batch, _taught(), step=6)
    parts, _ = step_losses(MinutiaeNet(WIDTH), batch, _taught(), step=4)
    assert "distill" not in parts  # not yet in the taught cycle


def test_a_distilled_run_refines_the_plain_run_and_learns_something_else(tmp_path: Path) -> None:
    images = random_training_images("DB1_B", 3, 1)
    _finished(tmp_path, "t.pt", ("DB1_B",), steps=4)
    foundation = tmp_path / "cycle1.pt"
    train(images, _config(refine_steps=2, refine_cycles=1), foundation, "cpu")
    twice = _config(refine_steps=2, refine_cycles=2)
    plain = train(images, twice, tmp_path / "p.pt", "cpu", foundation)
    taught = train(images, _taught(), tmp_path / "d.pt", "cpu", foundation)
    saved = torch.load(tmp_path / "d.pt", weights_only=False)
    assert saved["step"] == 7 and "steps 6-7" in saved["trained_with"]  # went on from cycle 1
    assert not torch.equal(plain.head.weight, taught.head.weight)


def test_a_distilled_run_names_its_teacher_and_refines_the_plain_runs_checkpoint() -> None:
    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser)
    common = ["--corpus", "c", "--steps", "100", "--width", "80", "--refine-steps", "50"]
    common += ["--refine-cycles", "2"]
    _, plain_path, plain_foundation = run_checkpoints(parser.parse_args(common), "DB3_B", "corpus")
    teacher = ["--teacher", "{run}-wide.pt"]
    config, path, foundation = run_checkpoints(
        parser.parse_args([*common, *teacher]), "DB3_B", "corpus"
    )
    assert config.teacher == "DB3_B-wide.pt" and config.distill_cycles == 1
    assert path.name.startswith("DB3_B-corpus-syn0-basic-w80-b32-t") and path != plain_path
    assert "d1x1-s100-r50x2" in path.name
    assert foundation == plain_foundation  # the plain run's first refining cycle
