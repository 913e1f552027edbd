"""Runs trained together as one grouped network train exactly as they would alone."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # the train extra; the kiosk's own test environment lacks it

import torch
from miniature_corpus import write_miniature_corpus
from random_training_images import random_training_images

from edge.preprocess import flatten_background
from models.train import sweep
from models.train.__main__ import argument_parser as train_argument_parser
from models.train.augment import Batch
from models.train.data import SYNTHETIC
from models.train.grouped import train_together
from models.train.loop import (
    REFINE_PEAK,
    TrainConfig,
    learning_rate_at,
    resumable_state,
    step_losses,
    train,
    written_by,
)
from models.train.net import HalfTurnTeacher, MinutiaeNet, join, split
from models.train.recipe import RENDERS, add_recipe_arguments, prepare
from models.train.sweep import parse_run

WIDTH = 8


def _nets(count: int) -> list[MinutiaeNet]:
    nets = []
    for seed in range(count):
        torch.manual_seed(seed)
        nets.append(MinutiaeNet(WIDTH))
    return nets


def _batch(n: int, cells: int, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    presence = (torch.rand(n, cells, cells, generator=g) < 0.2).float()
    return Batch(
        torch.randn(n, 1, 8 * cells, 8 * cells, generator=g),
        presence,
        torch.rand(n, 2, cells, cells, generator=g),
        torch.randn(n, 2, cells, cells, generator=g),
        torch.randint(-1, 2, (n, cells, cells), generator=g).float(),
        (torch.rand(n, cells, cells, generator=g) < 0.7).float(),
        (torch.rand(n, cells, cells, generator=g) < 0.1).float() * (presence == 0),
    )


def _rows(batch: Batch, start: int, stop: int) -> Batch:
    return Batch(*(getattr(batch, f)[start:stop] for f in Batch.__dataclass_fields__))


def test_splitting_a_joined_state_gives_back_each_network() -> None:
    nets = _nets(3)
    states = [net.state_dict() for net in nets]
    for original, back in zip(states, split(join(states), 3), strict=True):
        assert original.keys() == back.keys()
        for key in original:
            assert torch.equal(original[key], back[key]), key


def test_each_group_computes_what_its_network_computes_alone() -> None:
    nets = _nets(2)
    grouped = MinutiaeNet(WIDTH, models=2)
    grouped.load_state_dict(join([net.state_dict() for net in nets]))
    x = torch.randn(3, 2, 32, 40)
    for net in (*nets, grouped):
        net.eval()
    out = grouped(x).reshape(3, 2, 7, 4, 5)
    for k, net in enumerate(nets):
        assert torch.allclose(out[:, k], net(x[:, k : k + 1]), atol=1e-5)


@pytest.mark.parametrize("extra", ["none", "consistency", "distillation"])
def test_the_gradients_together_are_each_runs_gradients_alone(extra: str) -> None:
    # AdamW then updates element by element, so equal gradients mean equal training.
    nets = _nets(2)
    grouped = MinutiaeNet(WIDTH, models=2)
    grouped.load_state_dict(join([net.state_dict() for net in nets]))
    n, cells = 4, 4
    batch = _batch(2 * n, cells, seed=7)  # run 0's crops, then run 1's
    config = TrainConfig(1, n, 8 * cells, 1e-3, 5, WIDTH, ("DB1_B",), "corpus", 0, 0.0, "basic")
    step = 0
    if extra == "consistency":
        config = replace(config, consistency=1.0)
    elif extra == "distillation":  # step 1 is the refining cycle the teachers teach
        config = replace(config, refine_steps=1, teacher="t.pt", distill=1.0, distill_cycles=1)
        step = 1
    teachers = [MinutiaeNet(WIDTH + 4) for _ in range(2)]
    both = MinutiaeNet(WIDTH + 4, models=2)
    both.load_state_dict(join([t.state_dict() for t in teachers]))

    def backward(model: MinutiaeNet, targets: Batch, models: int, teacher: MinutiaeNet) -> None:
        model.train()
        taught = HalfTurnTeacher(teacher)
        _, total = step_losses(model, targets, config, step, models, taught)
        torch.autograd.backward(total)

    for k, net in enumerate(nets):
        backward(net, _rows(batch, k * n, (k + 1) * n), 1, teachers[k])
    together = batch.images.reshape(2, n, 8 * cells, 8 * cells).transpose(0, 1)
    backward(grouped, replace(batch, images=together.contiguous()), 2, both)

    grads = {name: p.grad for name, p in grouped.named_parameters()}
    for k, net in enumerate(nets):
        for name, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
            mine = grads[name].chunk(2, dim=0)[k]  # type: ignore[union-attr]
            # to float rounding, which depends on the summation order and so on torch's
            # thread count: an element near zero may be off by 1e-6 of the largest one
            scale = float(p.grad.abs().max())
            assert torch.allclose(mine, p.grad, rtol=1e-4, atol=max(1e-6, 1e-5 * scale)), name


def test_a_sweep_writes_each_run_a_checkpoint_that_training_alone_takes_as_finished(
    tmp_path: Path,
) -> None:
    config = TrainConfig(
        steps=3,
        batch_size=2,
        crop=32,
        learning_rate=1e-3,
        seed=5,
        width=WIDTH,
        databases=("DB1_B", "DB2_B"),
        labels="corpus",
        synthetic_images=0,
        synthetic_fraction=0.0,
        augmentation="strong",
    )
    first = random_training_images("DB1_B", 3, 1) + random_training_images("DB2_B", 3, 2)
    second = random_training_images("DB1_B", 3, 1) + random_training_images("DB3_B", 3, 3)
    runs = [
        (first, config, tmp_path / "a.pt"),
        (second, replace(config, databases=("DB1_B", "DB3_B")), tmp_path / "b.pt"),
    ]
    nets = train_together(runs, "cpu")
    for (images, run_config, checkpoint), net in zip(runs, nets, strict=True):
        saved = torch.load(checkpoint, weights_only=False)
        assert saved["step"] == 3 and "2 runs as one grouped network" in saved["trained_with"]
        alone = train(images, run_config, checkpoint, "cpu")  # nothing left to train
        for key, value in net.state_dict().items():
            assert torch.equal(value, alone.state_dict()[key]), key
    assert not torch.equal(nets[0].head.weight, nets[1].head.weight)  # they learnt apart


def test_runs_that_differ_in_a_shared_option_cannot_train_together(tmp_path: Path) -> None:
    config = TrainConfig(3, 2, 32, 1e-3, 5, WIDTH, ("DB1_B",), "corpus", 0, 0.0, "basic")
    images = random_training_images("DB1_B", 2, 1)
    runs = [
        (images, config, tmp_path / "a.pt"),
        (images, replace(config, batch_size=4), tmp_path / "b.pt"),
    ]
    with pytest.raises(ValueError, match="batch_size"):
        train_together(runs, "cpu")


def test_a_run_names_its_held_out_database_and_labels() -> None:
    assert parse_run("DB3_B:leader") == ("DB3_B", "leader")
    assert parse_run("all:corpus") == (None, "corpus")
    assert parse_run("DB1_B") == ("DB1_B", "corpus")
    with pytest.raises(argparse.ArgumentTypeError, match="DB9_B"):
        parse_run("DB9_B:corpus")
    with pytest.raises(argparse.ArgumentTypeError, match="teacher"):
        parse_run("all:teacher")


def test_a_checkpoint_from_before_an_option_existed_resumes_as_that_options_default(
    tmp_path: Path,
) -> None:
    config = TrainConfig(2, 2, 32, 1e-3, 5, WIDTH, ("DB1_B",), "corpus", 0, 0.0, "basic")
    images = random_training_images("DB1_B", 2, 1)
    checkpoint = tmp_path / "old.pt"
    first = train(images, config, checkpoint, "cpu")
    saved = torch.load(checkpoint, weights_only=False)
    del saved["config"]["background"]  # as written before --train-background existed
    torch.save(saved, checkpoint)
    assert written_by(config, saved["config"])
    assert not written_by(replace(config, background="flattened"), saved["config"])
    again = train(images, config, checkpoint, "cpu")  # finished: nothing is retrained
    for key, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_a_synthetic_run_keeps_its_renderings_beside_its_checkpoints_for_the_next_run(
    tmp_path: Path,
) -> None:
    corpus = write_miniature_corpus(tmp_path / "corpus", ["DB2_B", "DB3_B", "DB4_B"], seed=4)
    parser = _recipe_parser()
    args = parser.parse_args(
        ["--corpus", str(corpus), "--checkpoints", str(tmp_path / "ck"), "--synthetic", "2"]
    )
    first = prepare(args, "DB1_B", "corpus")
    kept = sorted((tmp_path / "ck" / RENDERS).glob("*.npy"))
    assert len(kept) == 2
    again = prepare(args, "DB1_B", "corpus")
    synthetic = [i for i in first.images if i.database == SYNTHETIC]
    assert len(synthetic) == 2
    for a, b in zip(first.images, again.images, strict=True):
        assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.minutiae, b.minutiae)


def test_flattened_training_images_get_their_own_checkpoint(tmp_path: Path) -> None:
    corpus = write_miniature_corpus(tmp_path / "corpus", ["DB2_B", "DB3_B", "DB4_B"], seed=4)
    parser = _recipe_parser()
    common = ["--corpus", str(corpus), "--checkpoints", str(tmp_path)]
    plain = prepare(parser.parse_args(common), "DB1_B", "corpus")
    flat = prepare(
        parser.parse_args([*common, "--train-background", "flattened"]), "DB1_B", "corpus"
    )
    assert plain.checkpoint != flat.checkpoint and "-flat-" in flat.checkpoint.name
    assert flat.config.background == "flattened" and plain.config.background == "as_captured"
    for a, b in zip(plain.images, flat.images, strict=True):
        assert np.array_equal(b.pixels, np.round(flatten_background(a.pixels)))
        assert np.array_equal(a.minutiae, b.minutiae)


def test_a_sweeps_export_commands_find_the_checkpoints_it_wrote(tmp_path: Path) -> None:
    corpus = write_miniature_corpus(tmp_path / "corpus", ["DB1_B", "DB2_B", "DB3_B", "DB4_B"], 4)
    recipe = ["--width", "8", "--augmentation", "strong", "--train-background", "flattened"]
    recipe += ["--steps", "30", "--refine-steps", "10", "--refine-cycles", "2"]
    recipe += ["--consistency", "0.5"]
    recipe += ["--teacher", "{run}-wide.pt", "--distill", "0.5", "--distill-cycles", "2"]
    runs = ["--run", "DB3_B:corpus", "--run", "all:corpus"]
    where = ["--corpus", str(corpus), "--checkpoints", str(tmp_path / "elsewhere")]
    args = sweep.argument_parser().parse_args([*where, *recipe, *runs])
    commands = sweep.export_commands(args)
    assert len(commands) == 2
    for (holdout, labels), command in zip(args.run, commands, strict=True):
        words = shlex.split(command)
        assert words[:3] == ["python", "-m", "models.train"]
        exported = train_argument_parser().parse_args(words[3:])
        swept = prepare(args, holdout, labels)
        again = prepare(exported, exported.holdout, exported.labels)
        assert again.checkpoint == swept.checkpoint
        assert again.config == swept.config
        assert again.config.teacher == f"{holdout or 'all'}-wide.pt"


def _recipe_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser)
    return parser


def _tiny_config(steps: int, refine_steps: int = 0, cycles: int = 1) -> TrainConfig:
    return TrainConfig(
        steps, 2, 32, 1e-3, 5, WIDTH, ("DB1_B",), "corpus", 0, 0.0, "basic",
        refine_steps=refine_steps, refine_cycles=cycles,
    )  # fmt: skip


def test_the_refining_cycle_restarts_the_rate_lower_and_leaves_the_first_cycle_alone() -> None:
    plain, refined = _tiny_config(1000), _tiny_config(1000, refine_steps=4000)
    for step in range(1000):
        assert learning_rate_at(refined, step) == learning_rate_at(plain, step)
    assert learning_rate_at(refined, 999) < 1e-8
    peak = max(learning_rate_at(refined, s) for s in range(1000, 5000))
    assert peak == pytest.approx(REFINE_PEAK * refined.learning_rate, rel=0.01)
    assert learning_rate_at(refined, 1000) < peak / 10  # warms up again
    assert learning_rate_at(refined, 4999) < 1e-8


def test_every_refining_cycle_repeats_the_first_one() -> None:
    once, thrice = _tiny_config(1000, 400), _tiny_config(1000, 400, cycles=3)
    assert thrice.total_steps == 2200
    for step in range(1400):
        assert learning_rate_at(thrice, step) == learning_rate_at(once, step)
    for into in range(400):
        first = learning_rate_at(thrice, 1000 + into)
        assert learning_rate_at(thrice, 1400 + into) == first
        assert learning_rate_at(thrice, 1800 + into) == first


def test_a_refined_run_goes_on_from_the_run_it_refines_as_if_trained_straight_through(
    tmp_path: Path,
) -> None:
    images = random_training_images("DB1_B", 3, 1)
    refined = _tiny_config(2, refine_steps=2)
    straight = train(images, refined, tmp_path / "straight.pt", "cpu")

    foundation = tmp_path / "base.pt"
    train(images, _tiny_config(2), foundation, "cpu")
    base = torch.load(foundation, weights_only=False)
    torch.save({**base, "trained_with": "a sweep on a GPU"}, foundation)
    resumed = train(images, refined, tmp_path / "refined.pt", "cpu", foundation)
    saved = torch.load(tmp_path / "refined.pt", weights_only=False)
    assert saved["step"] == 4
    assert saved["trained_with"] == (
        "steps 1-2: a sweep on a GPU; steps 3-4: a single run (python -m models.train)"
    )
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_another_refining_cycle_goes_on_from_the_run_with_one_cycle_fewer(
    tmp_path: Path,
) -> None:
    images = random_training_images("DB1_B", 3, 1)
    twice = _tiny_config(2, refine_steps=2, cycles=2)
    straight = train(images, twice, tmp_path / "straight.pt", "cpu")

    foundation = tmp_path / "once.pt"
    train(images, _tiny_config(2, refine_steps=2), foundation, "cpu")
    once = torch.load(foundation, weights_only=False)
    earlier = "steps 1-2: a sweep on a GPU; steps 3-4: a single run (python -m models.train)"
    torch.save({**once, "trained_with": earlier}, foundation)
    resumed = train(images, twice, tmp_path / "twice.pt", "cpu", foundation)
    saved = torch.load(tmp_path / "twice.pt", weights_only=False)
    assert saved["step"] == 6
    assert saved["trained_with"] == earlier + "; steps 5-6: a single run (python -m models.train)"
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    # The unrefined run is not what a second cycle goes on from.
    train(images, _tiny_config(2), tmp_path / "plain.pt", "cpu")
    assert resumable_state(twice, tmp_path / "none.pt", tmp_path / "plain.pt") is None


def test_a_refined_run_does_not_start_from_another_runs_checkpoint(tmp_path: Path) -> None:
    images = random_training_images("DB1_B", 3, 1)
    refined = _tiny_config(2, refine_steps=1)
    other = tmp_path / "other.pt"
    train(images, replace(_tiny_config(2), seed=6), other, "cpu")
    unfinished = tmp_path / "unfinished.pt"
    train(images, _tiny_config(1), unfinished, "cpu")  # same recipe, stopped at another step
    for foundation in (other, unfinished, tmp_path / "missing.pt"):
        assert resumable_state(refined, tmp_path / "refined.pt", foundation) is None
    assert resumable_state(_tiny_config(2), tmp_path / "x.pt", other) is None  # nothing to refine


def test_refined_runs_get_their_own_checkpoint_named_after_the_one_they_refine(
    tmp_path: Path,
) -> None:
    corpus = write_miniature_corpus(tmp_path / "corpus", ["DB2_B", "DB3_B", "DB4_B"], seed=4)
    parser = _recipe_parser()
    common = ["--corpus", str(corpus), "--checkpoints", str(tmp_path), "--steps", "50"]
    plain = prepare(parser.parse_args(common), "DB1_B", "corpus")
    refined = prepare(parser.parse_args([*common, "--refine-steps", "20"]), "DB1_B", "corpus")
    assert plain.foundation is None and refined.foundation == plain.checkpoint
    assert refined.checkpoint != plain.checkpoint and "-s50-r20-" in refined.checkpoint.name
    assert refined.config.previous == plain.config and refined.config.total_steps == 70
    twice = prepare(
        parser.parse_args([*common, "--refine-steps", "20", "--refine-cycles", "2"]),
        "DB1_B",
        "corpus",
    )
    assert twice.foundation == refined.checkpoint and "-s50-r20x2-" in twice.checkpoint.name
    assert twice.config.previous == refined.config and twice.config.total_steps == 90
    with pytest.raises(ValueError, match="--refine-cycles 2 needs --refine-steps"):
        prepare(parser.parse_args([*common, "--refine-cycles", "2"]), "DB1_B", "corpus")


def test_a_sweep_that_refines_finished_runs_says_which_steps_it_trained(tmp_path: Path) -> None:
    images = random_training_images("DB1_B", 3, 1)
    foundations = [tmp_path / "a.pt", tmp_path / "b.pt"]
    plain = [_tiny_config(2), replace(_tiny_config(2), databases=("DB2_B",))]
    train_together([(images, c, f) for c, f in zip(plain, foundations, strict=True)], "cpu", "S1")
    refined = [replace(c, refine_steps=1) for c in plain]
    checkpoints = [tmp_path / "a-r1.pt", tmp_path / "b-r1.pt"]
    runs = [(images, c, k) for c, k in zip(refined, checkpoints, strict=True)]
    train_together(runs, "cpu", "S2", foundations=list(foundations))
    for checkpoint in checkpoints:
        saved = torch.load(checkpoint, weights_only=False)
        assert saved["step"] == 3
        assert saved["trained_with"] == (
            "steps 1-2: S1 (2 runs as one grouped network, cpu); "
            "steps 3-3: S2 (2 runs as one grouped network, cpu)"
        )


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--steps", "0"),
        ("--refine-steps", "-1"),
        ("--refine-cycles", "0"),
        ("--batch-size", "0"),
        ("--synthetic", "-3"),
    ],
)
def test_a_recipe_count_below_its_minimum_is_refused_by_name(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _recipe_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--corpus", "c", option, value])
    error = capsys.readouterr().err
    assert option in error and "must be at least" in error
