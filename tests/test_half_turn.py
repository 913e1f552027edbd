"""The half-turn average: the network's view of the turned image, mapped back, is the same print."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("torch")  # the train extra; the kiosk's own test environment lacks it

import torch

from edge.extraction import DecodingSpec, decode_heads
from models.train.export import export_onnx
from models.train.net import HALF_TURN_SIGNS, HalfTurnAverage, HalfTurnPair, MinutiaeNet

# Everything the network marks at all, anywhere: the test is about geometry, not thresholds.
EVERYTHING = DecodingSpec(
    cell_size=8, presence_threshold=0.3, foreground_threshold=0.0, nms_radius=0.0, border_margin=0.0
)


def _network(seed: int) -> MinutiaeNet:
    torch.manual_seed(seed)
    net = MinutiaeNet(width=8)
    bias = net.head.bias
    assert bias is not None
    with torch.no_grad():
        bias[0] = 0.5  # about two cells in three above the threshold
    return net.eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_what_the_network_finds_in_the_turned_image_lands_on_the_same_minutiae_mapped_back(
    seed: int,
) -> None:
    net = _network(seed)
    image = torch.randn(1, 1, 48, 64)
    height, width = image.shape[2:]
    with torch.no_grad():
        plain = net(image)
        turned = net(torch.flip(image, dims=(2, 3)))
        # the average is (plain + turned view mapped back) / 2, so this is the mapped-back view
        mapped_back = 2 * HalfTurnAverage(net)(image) - plain

    in_turned = decode_heads(turned[0].numpy(), width, height, EVERYTHING)
    in_original = decode_heads(mapped_back[0].numpy(), width, height, EVERYTHING)

    assert len(in_turned) > 10
    assert len(in_original) == len(in_turned)
    for cx, cy, angle in zip(in_turned.x, in_turned.y, in_turned.angle, strict=True):
        x, y = width - 1 - cx, height - 1 - cy  # where it lies in the unturned image
        nearest = int(np.argmin(np.hypot(in_original.x - x, in_original.y - y)))
        assert math.hypot(in_original.x[nearest] - x, in_original.y[nearest] - y) < 1e-3
        turn = (in_original.angle[nearest] - angle) % 360.0  # reversed: 180 degrees apart
        assert abs(turn - 180.0) < 0.01


def test_the_average_has_the_networks_input_and_output_shapes() -> None:
    net = _network(3)
    image = torch.randn(1, 1, 40, 24)
    with torch.no_grad():
        assert HalfTurnAverage(net)(image).shape == net(image).shape == (1, 7, 5, 3)


def test_a_network_paired_with_itself_is_its_half_turn_average() -> None:
    net = _network(6)
    image = torch.randn(1, 1, 48, 40)
    with torch.no_grad():
        torch.testing.assert_close(HalfTurnPair(net, net)(image), HalfTurnAverage(net)(image))


def test_a_pair_sees_the_turned_image_as_the_same_print_with_the_roles_swapped() -> None:
    first, second = _network(7), _network(8)
    image = torch.randn(1, 1, 40, 56)
    signs = torch.tensor(HALF_TURN_SIGNS).view(1, -1, 1, 1)
    with torch.no_grad():
        plain = HalfTurnPair(first, second)(image)
        turned = HalfTurnPair(second, first)(torch.flip(image, dims=(2, 3)))
        different = HalfTurnPair(second, first)(image)
    torch.testing.assert_close(signs * torch.flip(turned, dims=(2, 3)), plain)
    assert not torch.allclose(different, plain, atol=1e-3)  # the roles are not interchangeable


@pytest.mark.parametrize("pair", [False, True])
def test_the_exported_graph_computes_the_same_average(tmp_path: Path, pair: bool) -> None:
    net = HalfTurnPair(_network(4), _network(9)) if pair else HalfTurnAverage(_network(4))
    path = tmp_path / "half.onnx"
    export_onnx(net, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for height, width in ((48, 64), (72, 40)):  # the graph's height and width are free
        image = torch.randn(1, 1, height, width)
        with torch.no_grad():
            expected = net(image).numpy()
        (heads,) = session.run(None, {"image": image.numpy()})
        np.testing.assert_allclose(heads, expected, atol=1e-4)


def test_quantisation_keeps_the_head_in_fp32_behind_the_average(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from models.train.quantize import Recipe, fp32_nodes

    path = tmp_path / "half.onnx"
    export_onnx(HalfTurnAverage(_network(5)), path)
    model = onnx.load(str(path))
    (head,) = _head_convolutions(model)
    assert head in fp32_nodes(model, Recipe())
    assert head not in fp32_nodes(model, Recipe(head_fp32=False))


def test_quantisation_keeps_both_heads_of_a_pair_in_fp32(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from models.train.quantize import Recipe, fp32_nodes

    path = tmp_path / "pair.onnx"
    export_onnx(HalfTurnPair(_network(5), _network(10)), path)
    model = onnx.load(str(path))
    heads = set(_head_convolutions(model))
    assert len(heads) == 2
    assert heads <= set(fp32_nodes(model, Recipe()))


def _head_convolutions(model: Any) -> list[str]:
    """Names of the Conv nodes with seven output channels: the heads."""
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and weights[n.input[1]][0] == 7]
