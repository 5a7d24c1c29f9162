"""The MobileNet spaces' ops: MBConv (inverted residual) blocks in the original's order, and the layer shapes
(the original's ``torch_blocks.py`` and ``backbone_info``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn

IDENTITY = -1
"""Op index of the identity (skip the whole block) choice."""

BLOCK_KEYS = (
    "mobilenet_3x3_ratio_3",
    "mobilenet_3x3_ratio_6",
    "mobilenet_5x5_ratio_3",
    "mobilenet_5x5_ratio_6",
    "mobilenet_7x7_ratio_3",
    "mobilenet_7x7_ratio_6",
)
"""Candidate MBConv blocks, in the original's index order: (kernel, expansion) = (3,3) (3,6) (5,3) (5,6) (7,3) (7,6)."""

BLOCK_SHAPES = ((3, 3), (3, 6), (5, 3), (5, 6), (7, 3), (7, 6))


@dataclass(frozen=True)
class LayerSpec:
    """One searchable layer: channels in/out, stride, spatial input size and whether identity may replace it."""

    inp: int
    oup: int
    stride: int
    input_res: int
    identity_allowed: bool


class MobileLayout(Protocol):
    """What the networks of the family read of a :class:`~anglenas.spaces.mobilenet.space.MobileSpace`."""

    name: str
    stem_channels: int
    stem_stride: int
    first_block_channels: int
    layers: tuple[LayerSpec, ...]
    head_channels: int
    num_classes: int
    input_size: int
    width_mult: float


def conv_bn_relu6(inp: int, oup: int, kernel: int, stride: int) -> nn.Sequential:
    """Conv (no bias) -> BN -> ReLU6; used for the stem (3x3) and the head (1x1)."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand -> BN -> ReLU6] -> kxk depthwise -> BN -> ReLU6 -> 1x1 project -> BN.

    The expansion conv is absent when ``expand == 1``. The conv layers sit at indices 0, 3, 6 of ``self.conv``
    (0, 3 without expansion), which the angle metric relies on (:attr:`conv_weights`).
    """

    def __init__(self, inp: int, oup: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inp * expand
        self.use_residual = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    @property
    def conv_weights(self) -> list[torch.Tensor]:
        """The block's conv weights in forward order (its contribution to the angle vector)."""
        return [m.weight for m in self.conv if isinstance(m, nn.Conv2d)]

    def zero_init_last(self) -> None:
        """Start a residual block as the identity: its last BN's gamma = 0 (Goyal et al. 2017; timm's
        ``zero_init_last``). The conv weights, hence the angle's W0, are untouched."""
        if self.use_residual:
            nn.init.zeros_(self.conv[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


def make_block(op: int, inp: int, oup: int, stride: int) -> InvertedResidual:
    """The candidate block with op index ``op`` (0..5, see :data:`BLOCK_KEYS`)."""
    kernel, expand = BLOCK_SHAPES[op]
    return InvertedResidual(inp, oup, kernel, stride, expand)


def add_ends(model: nn.Module, space: MobileLayout, layers: nn.Module, dropout: float | None = None) -> None:
    """Register on ``model`` the parts every network of the family has around its searchable ``layers``, in
    state-dict order (checkpoints and the original's released weights load by name or position): ``stem`` (3x3
    conv-BN-ReLU6), the fixed t=1 ``first_block``, ``layers``, the 1x1 ``head``, ``pool``, a ``dropout`` (given for
    stand-alone networks) and the linear ``classifier``."""
    model.stem = conv_bn_relu6(3, space.stem_channels, 3, space.stem_stride)
    model.first_block = InvertedResidual(space.stem_channels, space.first_block_channels, 3, 1, 1)
    model.layers = layers
    model.head = conv_bn_relu6(space.layers[-1].oup, space.head_channels, 1, 1)
    model.pool = nn.AdaptiveAvgPool2d(1)
    if dropout is not None:
        model.dropout = nn.Dropout(dropout)
    model.classifier = nn.Linear(space.head_channels, space.num_classes)


def forward_stem(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Stem and first block of a model built with :func:`add_ends`."""
    return model.first_block(model.stem(x))


def forward_head(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Head, pooling, dropout (if any) and classifier of a model built with :func:`add_ends`."""
    x = model.pool(model.head(x)).flatten(1)
    return model.classifier(model.dropout(x) if hasattr(model, "dropout") else x)


def run_chain(model: nn.Module, x: torch.Tensor, layers: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The forward pass of a model built with :func:`add_ends`, its searchable part being ``layers``."""
    return forward_head(model, layers(forward_stem(model, x)))
