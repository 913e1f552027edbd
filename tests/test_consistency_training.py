"""Quarter-turn consistency: a crop turned by quarter turns is the same print, cell for cell."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # the train extra; the kiosk's own test environment lacks it

import torch
from random_training_images import random_training_images

from models.train.augment import Batch, Crops, ImageBank, cell_targets, make_batch
from models.train.loop import TrainConfig, consistency_loss, step_losses, train, turns_at
from models.train.net import HALF_TURN_SIGNS, MinutiaeNet, quarter_turns_back
from models.train.recipe import add_recipe_arguments, run_checkpoints

SIZE = 64  # a square crop: 8 x 8 cells


def _crops(seed: int) -> Crops:
    """Two crops with minutiae in distinct cells, well inside them (no cell-edge ties)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(2):
        cells = rng.choice(64, size=10, replace=False)
        x = 8 * (cells % 8) + rng.uniform(1, 6, 10)
        y = 8 * (cells // 8) + rng.uniform(1, 6, 10)
        angle = rng.uniform(0, 2 * np.pi, 10)
        kind = rng.integers(1, 3, 10)
        rows.append(np.column_stack([x, y, np.cos(angle), np.sin(angle), kind]))
    images = torch.from_numpy(rng.standard_normal((2, 1, SIZE, SIZE)).astype(np.float32))
    minutiae = torch.from_numpy(np.stack(rows).astype(np.float32))
    return Crops(images, minutiae, torch.ones(2, 10, dtype=torch.bool))


def _turned(crops: Crops, turns: int) -> Crops:
    """The crops as ``torch.rot90(image, turns, dims=(2, 3))`` shows them, labels moved alike."""
    minutiae = crops.minutiae.clone()
    for _ in range(turns):
        x, y, dx, dy = (minutiae[..., i].clone() for i in range(4))
        # pixel (row r, col c) goes to (row S-1-c, col r); a direction (dx, dy) to (dy, -dx)
        minutiae[..., 0], minutiae[..., 1] = y, SIZE - 1 - x
        minutiae[..., 2], minutiae[..., 3] = dy, -dx
    images = torch.rot90(crops.images, turns, dims=(2, 3))
    return Crops(images, minutiae, crops.labelled)


def _as_heads(batch: Batch) -> torch.Tensor:
    """Targets written as the network's 7 head channels (offsets as logits)."""
    offsets = torch.logit(batch.offsets.clamp(1e-4, 1 - 1e-4))
    return torch.cat(
        [
            batch.presence[:, None],
            offsets,
            batch.direction,
            batch.bifurcation[:, None],
            batch.foreground[:, None],
        ],
        dim=1,
    )


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_a_turned_crops_targets_mapped_back_are_the_crops_own(turns: int) -> None:
    crops = _crops(turns)
    plain = cell_targets(crops)
    turned = cell_targets(_turned(crops, turns))
    assert int(plain.presence.sum()) == 20

    back = quarter_turns_back(_as_heads(turned), turns)
    expected = _as_heads(plain)
    assert torch.equal(back[:, 0], expected[:, 0])  # every minutia lands in its own cell
    assert torch.equal(back[:, 6], expected[:, 6])  # and the foreground with it
    where = plain.presence.bool()
    for channel in range(1, 6):  # offsets, direction, type where there is a minutia
        assert torch.allclose(back[:, channel][where], expected[:, channel][where], atol=1e-4)


def test_two_quarter_turns_back_are_the_half_turn_mapping() -> None:
    heads = torch.randn(3, 7, 6, 6)
    signs = torch.tensor(HALF_TURN_SIGNS).view(1, 7, 1, 1)
    assert torch.equal(quarter_turns_back(heads, 2), signs * torch.flip(heads, dims=(2, 3)))


def test_quarter_turns_map_each_grouped_networks_channels_on_their_own() -> None:
    heads = torch.randn(2, 14, 5, 5)
    both = quarter_turns_back(heads, 1)
    for k in range(2):
        alone = quarter_turns_back(heads[:, 7 * k : 7 * k + 7], 1)
        assert torch.equal(both[:, 7 * k : 7 * k + 7], alone)


def test_a_quarter_turn_needs_a_square_grid() -> None:
    with pytest.raises(ValueError, match="square"):
        quarter_turns_back(torch.zeros(1, 7, 4, 5), 1)


def test_views_that_agree_cost_nothing_and_disagreement_pulls_on_both() -> None:
    a = torch.randn(2, 7, 4, 4, requires_grad=True)
    b = torch.randn(2, 7, 4, 4, requires_grad=True)
    assert float(consistency_loss(a, a.detach().clone()).detach()) == pytest.approx(0.0, abs=1e-7)
    loss = consistency_loss(a, b)
    assert loss.shape == (1,) and float(loss.detach()) > 0
    torch.autograd.backward(loss.sum())
    for grad in (a.grad, b.grad):
        assert grad is not None
        assert grad[:, 0].abs().sum() > 0 and grad[:, 3:5].abs().sum() > 0
        assert grad[:, 5:].abs().sum() == 0  # type and foreground are not compared


def test_every_turn_comes_round_in_three_steps() -> None:
    assert sorted(turns_at(step) for step in range(30, 33)) == [1, 2, 3]


def test_a_consistency_run_learns_something_else_than_the_same_run_without(
    tmp_path: Path,
) -> None:
    # That a sweep trains it as each run alone is tested with the other sweep tests.
    config = TrainConfig(3, 2, 32, 1e-3, 5, 8, ("DB1_B",), "corpus", 0, 0.0, "basic")
    images = random_training_images("DB1_B", 3, 1)
    plain = train(images, config, tmp_path / "plain.pt", "cpu")
    agreeing = train(images, replace(config, consistency=1.0), tmp_path / "agree.pt", "cpu")
    assert not torch.equal(plain.head.weight, agreeing.head.weight)


def test_a_consistency_run_gets_its_own_checkpoint_and_plain_runs_keep_their_names() -> None:
    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser)
    common = ["--corpus", "c", "--steps", "100", "--width", "80"]
    plain, plain_path, _ = run_checkpoints(parser.parse_args(common), "DB3_B", "corpus")
    agreeing, path, _ = run_checkpoints(
        parser.parse_args([*common, "--consistency", "0.5"]), "DB3_B", "corpus"
    )
    assert plain.consistency == 0.0 and agreeing.consistency == 0.5
    assert plain_path.name == "DB3_B-corpus-syn0-basic-w80-b32-s100-seed20021.pt"
    assert path.name == "DB3_B-corpus-syn0-basic-w80-b32-c0.5-s100-seed20021.pt"


def test_the_network_sees_both_views_of_a_consistency_batch() -> None:
    # The turned view goes through the same network (and its batch norm) in the same pass.
    net = MinutiaeNet(8)
    seen: list[int] = []
    net.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[0]))
    config = TrainConfig(1, 2, 32, 1e-3, 5, 8, ("DB1_B",), "corpus", 0, 0.0, "basic", consistency=1)
    bank = ImageBank.build(random_training_images("DB1_B", 2, 1))
    batch = make_batch(bank, 2, 32, torch.Generator().manual_seed(0))
    parts, total = step_losses(net, batch, config, 0)
    assert seen == [4] and "consistency" in parts and total.requires_grad
