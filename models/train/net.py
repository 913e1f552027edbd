"""The extraction network: a small stride-8 CNN for edge CPUs (Conv-BN-ReLU, separable)."""

from __future__ import annotations

import torch
from torch import nn

HEAD_CHANNELS = 7  # presence, offset x, offset y, cos, sin, bifurcation, foreground (logits/raw)
CELL = 8


def conv_bn_relu(
    c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(
            c_in,
            c_out,
            kernel,
            stride,
            padding=dilation * (kernel // 2),
            dilation=dilation,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Separable(nn.Module):
    """Depthwise 3x3 then pointwise 1x1; residual when the shape is kept.

    With ``models`` > 1 it is that many independent copies side by side (grouped convolutions).
    """

    def __init__(
        self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1, models: int = 1
    ) -> None:
        super().__init__()
        m = models
        self.depthwise = conv_bn_relu(m * c_in, m * c_in, 3, stride, m * c_in, dilation)
        self.pointwise = conv_bn_relu(m * c_in, m * c_out, 1, groups=m)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.pointwise(self.depthwise(x))
        return x + y if self.residual else y


class MinutiaeNet(nn.Module):
    """1x1xHxW standardised image -> 1x7x(H/8)x(W/8) head, H and W multiples of 8.

    Dilated blocks at 1/8 resolution give a receptive field of about 170 px, enough to see
    ridge flow around a minutia at 500 ppi. ``models`` > 1 stacks that many independent networks
    as groups (input channel k and output channels 7k..7k+6 are network k), so one pass trains
    them all; :func:`models.train.grouped.split` takes them apart.
    """

    def __init__(self, width: int = 64, models: int = 1) -> None:
        super().__init__()
        m = models
        self.models = models
        self.features = nn.Sequential(
            conv_bn_relu(m, m * 16, 3, stride=2, groups=m),
            Separable(16, 24, stride=2, models=m),
            Separable(24, 24, models=m),
            Separable(24, 48, stride=2, models=m),
            Separable(48, width, models=m),
            Separable(width, width, dilation=2, models=m),
            Separable(width, width, dilation=4, models=m),
            Separable(width, width, dilation=2, models=m),
            Separable(width, width, models=m),
            conv_bn_relu(m * width, m * width, 1, groups=m),
        )
        self.head = nn.Conv2d(m * width, m * HEAD_CHANNELS, 1, groups=m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


def split(state: dict[str, torch.Tensor], models: int) -> list[dict[str, torch.Tensor]]:
    """A grouped network's state dict as ``models`` single networks' state dicts."""
    parts: list[dict[str, torch.Tensor]] = [{} for _ in range(models)]
    for key, value in state.items():
        pieces = [value] * models if value.ndim == 0 else list(value.chunk(models, dim=0))
        for part, piece in zip(parts, pieces, strict=True):
            part[key] = piece.clone()
    return parts


def join(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Single networks' state dicts as one grouped network's (inverse of :func:`split`)."""
    return {
        key: value if value.ndim == 0 else torch.cat([s[key] for s in states], dim=0)
        for key, value in states[0].items()
    }


# Turning the image half a turn moves a minutia to the mirrored cell with both offsets mirrored
# (sigmoid(-z) = 1 - sigmoid(z)) and its direction reversed; presence, type and foreground are
# unchanged. Channel order as in edge.extraction.HEAD_CHANNELS.
HALF_TURN_SIGNS = (1.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.0)


def quarter_turns_back(heads: torch.Tensor, turns: int) -> torch.Tensor:
    """Heads computed on an image turned by ``torch.rot90(image, turns, dims=(2, 3))``, mapped
    back onto the unturned image's cells.

    One such turn moves a point (x, y) of an S x S image to (y, S - x): the cell grid turns the
    same way, the x offset becomes the y offset and the y offset 1 minus the x offset, and the
    ISO direction turns by +90 degrees ((cos, sin) -> (-sin, cos)); presence, type and
    foreground are unchanged. ``heads`` may hold several grouped networks' 7 channels each.
    """
    n, channels, rows, cols = heads.shape
    if rows != cols:
        raise ValueError(f"a quarter turn needs a square grid, got {rows} x {cols}")
    h = heads.reshape(n, channels // HEAD_CHANNELS, HEAD_CHANNELS, rows, cols)
    for _ in range(turns % 4):
        h = torch.rot90(h, -1, dims=(3, 4))
        c = [h[:, :, i : i + 1] for i in range(5)]  # presence, offset x, y, cos, sin
        h = torch.cat([c[0], -c[2], c[1], c[4], -c[3], h[:, :, 5:]], dim=2)
    return h.reshape(n, channels, rows, cols)


class _HalfTurn(nn.Module):
    """Maps heads computed on the image turned 180 degrees back onto the unturned image."""

    def __init__(self) -> None:
        super().__init__()
        self.signs: torch.Tensor
        self.register_buffer("signs", torch.tensor(HALF_TURN_SIGNS).view(1, HEAD_CHANNELS, 1, 1))

    def average(self, plain: torch.Tensor, turned: torch.Tensor) -> torch.Tensor:
        """The mean of ``plain`` and ``turned`` mapped back."""
        out: torch.Tensor = 0.5 * (plain + self.signs * torch.flip(turned, dims=(2, 3)))
        return out


class HalfTurnAverage(_HalfTurn):
    """The network's heads averaged over the image and the image turned 180 degrees.

    Trained with rotations of any angle, the network makes partly different mistakes on the two
    views, so the average keeps the minutiae both agree on and drops many spurious ones. Same
    input and output as the network it wraps; H and W must be multiples of 8 (as the
    extractor's padding makes them) so that the turned view's cells line up.
    """

    def __init__(self, net: MinutiaeNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        both = self.net(torch.cat([x, torch.flip(x, dims=(2, 3))]))
        return self.average(both[:1], both[1:])


class HalfTurnTeacher(_HalfTurn):
    """A frozen network's heads on a batch of crops, averaged over each crop and the crop
    turned 180 degrees, as the half-turn export computes them; grouped (``net.models`` > 1)
    like the students it teaches. Crops' sides must be multiples of 8.
    """

    def __init__(self, net: MinutiaeNet) -> None:
        super().__init__()
        self.signs = self.signs.repeat(1, net.models, 1, 1)
        self.net = net
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        both = self.net(torch.cat([x, torch.flip(x, dims=(2, 3))]))
        return self.average(both[:n], both[n:])


class HalfTurnPair(_HalfTurn):
    """Two networks' heads averaged: ``net`` on the image, ``partner`` on the image turned 180
    degrees (mapped back as :class:`HalfTurnAverage` maps it).

    Two passes, as the half-turn average, in the hope that networks trained on different data
    share fewer mistakes than one network's two views; held out it did not verify better (see
    the model card). Same input and output as either network.
    """

    def __init__(self, net: MinutiaeNet, partner: MinutiaeNet) -> None:
        super().__init__()
        self.net = net
        self.partner = partner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.average(self.net(x), self.partner(torch.flip(x, dims=(2, 3))))
