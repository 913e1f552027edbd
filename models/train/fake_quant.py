"""Quantisation-aware training: the network computed as its int8 model will compute it.

``models.train.quantize`` turns the exported network into an int8 one after training, and the
rounding moves presence logits near the threshold enough to change which minutiae a print
yields. :class:`SimulatedInt8` runs the network with that rounding simulated (straight-through
gradients), so refining cycles can teach weights that keep their minutiae once rounded:

- batch norm is folded into each convolution with its running statistics, as the ONNX export
  folds it; those statistics stay as they are (gamma and beta still learn);
- the convolutions the quantiser turns to int8 (all but the ``Recipe.leading_fp32`` first ones
  and the head) round their folded weights per output channel to symmetric int8;
- every tensor such a convolution reads or writes, and every residual sum after one, is rounded
  to uint8 over a range that follows the batches' minimum and maximum (always including 0), as
  MinMax calibration sets it from whole images; the image and the heads are not rounded.

A grouped network (``models`` > 1, see :mod:`models.train.grouped`) keeps a range per network,
so runs trained together still do not affect one another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.train.net import MinutiaeNet, Separable
from models.train.quantize import Recipe

RANGE_MOMENTUM = 0.05  # how fast a tensor's range follows the batches'
_INT8_LIMITS = (-127, 127)  # symmetric, as the quantiser rounds weights
_UINT8_LIMITS = (0, 255)


class SimulatedInt8:
    """``net``'s forward pass with int8 rounding where the quantiser puts it.

    ``rounding=False`` computes the same folded graph without rounding, which is the network in
    evaluation mode up to float error.
    """

    def __init__(self, net: MinutiaeNet, recipe: Recipe | None = None, rounding: bool = True):
        self.net = net
        self.rounding = rounding
        leading = (recipe or Recipe()).leading_fp32
        body = [m for m in net.features.modules() if isinstance(m, nn.Conv2d)]  # in forward order
        self._int8 = {id(conv) for conv in body[leading:]}
        self.ranges: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rounded = False  # whether x already holds int8-rounded values
        for index, layer in enumerate(self.net.features):
            if isinstance(layer, Separable):
                y, y_rounded = self._conv_bn_relu(layer.depthwise, x, rounded, f"{index}.dw")
                y, y_rounded = self._conv_bn_relu(layer.pointwise, y, y_rounded, f"{index}.pw")
                if layer.residual:
                    # the int8 graph adds in int8 when either side is an int8 tensor
                    total = x + y
                    rounded = rounded or y_rounded
                    x = self._activation(total, f"{index}.sum") if rounded else total
                else:
                    x, rounded = y, y_rounded
            else:
                assert isinstance(layer, nn.Sequential)
                x, rounded = self._conv_bn_relu(layer, x, rounded, str(index))
        head = self.net.head
        out: torch.Tensor = F.conv2d(x, head.weight, head.bias, groups=head.groups)
        return out

    def quantised(self, conv: nn.Conv2d) -> bool:
        """Whether the quantiser makes ``conv`` int8."""
        return id(conv) in self._int8

    def _conv_bn_relu(
        self, block: nn.Sequential, x: torch.Tensor, rounded: bool, site: str
    ) -> tuple[torch.Tensor, bool]:
        conv, norm = block[0], block[1]
        assert isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
        assert norm.running_var is not None and norm.running_mean is not None
        gain = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        weight = conv.weight * gain[:, None, None, None]
        bias = norm.bias - norm.running_mean * gain
        int8 = self.quantised(conv)
        if int8:
            if not rounded:
                x = self._activation(x, f"{site}.in")
            weight = self._weight(weight)
        y = F.relu(F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups))
        if int8:
            return self._activation(y, f"{site}.out"), True
        return y, False

    def _weight(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.rounding:
            return weight
        bound = weight.detach().abs().amax(dim=(1, 2, 3)).clamp_min(1e-8)
        scale = (bound / _INT8_LIMITS[1]).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, *_INT8_LIMITS)

    def _activation(self, x: torch.Tensor, site: str) -> torch.Tensor:
        if not self.rounding:
            return x
        models = self.net.models
        n, channels = x.shape[:2]
        per_network = x.detach().reshape(n, models, -1).transpose(0, 1).reshape(models, -1)
        low = per_network.amin(dim=1).clamp(max=0.0)
        high = per_network.amax(dim=1).clamp(min=0.0)
        if site in self.ranges:
            old_low, old_high = self.ranges[site]
            low = old_low + RANGE_MOMENTUM * (low - old_low)
            high = old_high + RANGE_MOMENTUM * (high - old_high)
        self.ranges[site] = (low, high)
        scale = ((high - low) / _UINT8_LIMITS[1]).clamp_min(1e-8).float()
        zero = torch.round(-low / scale).clamp(*_UINT8_LIMITS).to(torch.int32)
        each = channels // models
        return torch.fake_quantize_per_channel_affine(
            x, scale.repeat_interleave(each), zero.repeat_interleave(each), 1, *_UINT8_LIMITS
        )
