"""Quantisation-aware refining cycles: the network trained through its int8 model's rounding."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")  # the train extra; the kiosk's own test environment lacks it

import onnxruntime as ort
import torch
from random_training_images import random_training_images

from models.train import fake_quant
from models.train.augment import ImageBank, make_batch
from models.train.export import INPUT_NAME, export_onnx
from models.train.fake_quant import SimulatedInt8
from models.train.loop import TrainConfig, step_losses, train
from models.train.net import MinutiaeNet, Separable, join
from models.train.quantize import Recipe, fp32_nodes, quantize
from models.train.recipe import add_recipe_arguments, run_checkpoints


def _net(width: int = 40, models: int = 1, seed: int = 3) -> MinutiaeNet:
    """A network with batch-norm statistics and affine parameters away from their defaults."""
    torch.manual_seed(seed)
    net = MinutiaeNet(width, models)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def _images(count: int = 3, side: int = 64, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 1, side, side, generator=generator)


def _config(**changes: Any) -> TrainConfig:
    config = TrainConfig(3, 2, 32, 1e-3, 5, 8, ("DB1_B",), "corpus", 0, 0.0, "basic")
    return replace(config, **changes)


def test_without_rounding_the_simulation_is_the_network_in_evaluation_mode() -> None:
    net = _net()
    x = _images()
    with torch.no_grad():
        expected = net(x)
        simulated = SimulatedInt8(net, rounding=False)(x)
    assert torch.allclose(simulated, expected, atol=1e-4, rtol=1e-4)


def test_the_quantiser_and_the_simulation_agree_on_which_convolutions_stay_fp32(
    tmp_path: Path,
) -> None:
    net = _net(width=40)
    export_onnx(net, tmp_path / "fp32.onnx")
    model = onnx.load(str(tmp_path / "fp32.onnx"))
    kept = set(fp32_nodes(model, Recipe()))
    in_graph = [n.name not in kept for n in model.graph.node if n.op_type == "Conv"]
    simulation = SimulatedInt8(net)
    in_net = [simulation.quantised(m) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert in_net[-1] is False  # the head
    assert in_net == in_graph and sum(in_net) == len(in_net) - 3


def _steps_apart(theirs: np.ndarray, mine: np.ndarray, step: float) -> float:
    """Mean distance in quantisation steps where the int8 graph's tensor is not zero (ReLU's
    zeros agree whether rounded or not)."""
    active = theirs != 0
    return float(np.abs(theirs - mine)[active].mean()) / step


def _rounded_tensor(site: str) -> str:
    """The exported graph's name for the tensor a simulation site rounds."""
    index, _, part = site.partition(".")
    block = f"/features/features.{index}"
    return {
        "pw.in": f"{block}/depthwise/depthwise.2/Relu_output_0",
        "dw.out": f"{block}/depthwise/depthwise.2/Relu_output_0",
        "pw.out": f"{block}/pointwise/pointwise.2/Relu_output_0",
        "sum": f"{block}/Add_output_0",
        "out": f"{block}/features.{index}.2/Relu_output_0",
    }[part]


def test_the_simulation_rounds_every_tensor_as_the_int8_model_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = _net(width=40)
    calibration = _images(4, 64, seed=2)
    export_onnx(net, tmp_path / "fp32.onnx")
    tensors = [calibration[i : i + 1].numpy() for i in range(len(calibration))]
    # The simulation takes each tensor's widest range over the images, so the int8 model is
    # calibrated that way here; the shipped recipe's mean of per-image ranges is finer.
    widest = Recipe(mean_ranges=False)
    quantize(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", INPUT_NAME, tensors, widest)
    # Each rounded activation of the int8 graph (the output of the DequantizeLinear after its
    # QuantizeLinear), as ONNX Runtime evaluates the QDQ nodes unfused: its fused int8 kernels
    # may saturate on x86 without VNNI, which is the runtime's doing, not the graph's.
    model = onnx.load(str(tmp_path / "int8.onnx"))
    producers = {out: node for node in model.graph.node for out in node.output}
    rounded = {
        producers[n.input[0]].input[0]: n.output[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in producers
    }
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in rounded.values())
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options)
    names = [o.name for o in session.get_outputs()]
    graph = dict(zip(names, session.run(None, {INPUT_NAME: tensors[0]}), strict=True))

    simulation = SimulatedInt8(net)
    with torch.no_grad():
        simulation(calibration)  # ranges from every image at once: MinMax calibration's extremes
    monkeypatch.setattr(fake_quant, "RANGE_MOMENTUM", 0.0)
    seen: dict[str, torch.Tensor] = {}
    rounding = simulation._activation

    def recorded(x: torch.Tensor, site: str) -> torch.Tensor:
        seen[site] = rounding(x, site)
        return seen[site]

    monkeypatch.setattr(simulation, "_activation", recorded)
    with torch.no_grad():
        simulation(calibration[:1])
    assert {_rounded_tensor(site) for site in seen} == {t for t in rounded if "/features" in t}
    first = net.features[1]
    assert isinstance(first, Separable)
    with torch.no_grad():
        plain = first.depthwise(net.features[0](calibration[:1]))  # what 1.pw.in rounds
    for site, values in seen.items():
        low, high = simulation.ranges[site]
        step = float(high - low) / 255
        theirs = graph[rounded[_rounded_tensor(site)]]
        # rounding flips near half a step add up with depth; the first two blocks show the grid
        if int(site.split(".")[0]) <= 2:
            assert _steps_apart(theirs, values.numpy(), step) < 0.15, site
    # the first rounded tensor, not rounded, lies a quarter of a step off on average
    step = float(simulation.ranges["1.pw.in"][1] - simulation.ranges["1.pw.in"][0]) / 255
    theirs = graph[rounded[_rounded_tensor("1.pw.in")]]
    assert _steps_apart(theirs, plain.numpy(), step) > 0.2


def test_networks_trained_together_keep_their_own_ranges() -> None:
    nets = [_net(width=40, seed=s) for s in (3, 4)]
    grouped = MinutiaeNet(40, models=2).eval()
    grouped.load_state_dict(join([n.state_dict() for n in nets]))
    x = _images(2, 64)
    with torch.no_grad():
        together = SimulatedInt8(grouped)(torch.cat([x, 3.0 * x], dim=1))
        alone = [SimulatedInt8(nets[0])(x), SimulatedInt8(nets[1])(3.0 * x)]
    assert torch.allclose(together[:, :7], alone[0], atol=1e-5)
    assert torch.allclose(together[:, 7:], alone[1], atol=1e-5)


def test_quant_aware_cycles_are_the_last_refining_cycles() -> None:
    config = _config(refine_steps=2, refine_cycles=2, quant_aware_cycles=1)
    assert [config.quant_aware_at(s) for s in range(config.total_steps)] == [
        *[False] * 5,
        *[True] * 2,
    ]
    assert config.previous == _config(refine_steps=2, refine_cycles=1)
    with pytest.raises(ValueError, match="quantisation-aware cycles"):
        _config(refine_steps=2, refine_cycles=1, quant_aware_cycles=2)
    with pytest.raises(ValueError, match="quantisation-aware cycles"):
        _config(quant_aware_cycles=1)


def test_a_quant_aware_run_names_its_checkpoint_and_goes_on_from_the_plain_run() -> None:
    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser)
    args = parser.parse_args(
        [
            *("--corpus", "c", "--steps", "9", "--refine-steps", "3", "--refine-cycles", "3"),
            *("--quant-aware-cycles", "1", "--checkpoints", "ck"),
        ]
    )
    config, checkpoint, foundation = run_checkpoints(args, "DB3_B", "corpus")
    assert config.quant_aware_cycles == 1
    assert checkpoint.name == "DB3_B-corpus-syn0-basic-w64-b32-q1-s9-r3x3-seed20021.pt"
    assert foundation is not None
    assert foundation.name == "DB3_B-corpus-syn0-basic-w64-b32-s9-r3x2-seed20021.pt"


def test_a_quant_aware_step_needs_the_simulation_of_its_own_model() -> None:
    config = _config(refine_steps=2, refine_cycles=1, quant_aware_cycles=1)
    images = random_training_images("DB1_B", 2, seed=4)
    bank = ImageBank.build(images, None, "cpu")
    batch = make_batch(bank, 2, 32, torch.Generator().manual_seed(1))
    model = MinutiaeNet(8)
    with pytest.raises(ValueError, match="quantisation-aware"):
        step_losses(model, batch, config, 3)
    with pytest.raises(ValueError, match="quantisation-aware"):
        step_losses(model, batch, config, 3, simulated=SimulatedInt8(MinutiaeNet(8)))
    parts, total = step_losses(model, batch, config, 3, simulated=SimulatedInt8(model))
    assert torch.isfinite(total) and set(parts) >= {"presence", "direction"}


def test_quant_aware_training_moves_the_weights_and_leaves_batch_norm_statistics(
    tmp_path: Path,
) -> None:
    images = random_training_images("DB1_B", 3, seed=6)
    plain = _config(refine_steps=2, refine_cycles=1)
    before = train(images, plain, tmp_path / "plain.pt")
    aware = replace(plain, refine_cycles=2, quant_aware_cycles=1)
    after = train(images, aware, tmp_path / "aware.pt", foundation=tmp_path / "plain.pt")
    old, new = before.state_dict(), after.state_dict()
    statistics = [k for k in old if k.endswith(("running_mean", "running_var"))]
    assert statistics and all(torch.equal(old[k], new[k]) for k in statistics)
    weights = [k for k in old if k.endswith("weight")]
    assert any(not torch.equal(old[k], new[k]) for k in weights)
