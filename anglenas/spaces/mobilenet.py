"""The two MobileNet-like ImageNet search spaces of ABS (spec §1.1-§1.3).

A space is pure data: the stem, the fixed first block, the searchable layers and the head. Models, FLOPs
tables and samplers are all built from it, so a width multiplier, another input size or class count gives a
consistent family (the embedded CPU demo uses a narrow 32x32 version of the same 21 layers).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

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


def op_name(op: int) -> str:
    """Human-readable name of an op index (``-1`` is identity)."""
    return "identity" if op == IDENTITY else BLOCK_KEYS[op]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor``, never dropping more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class LayerSpec:
    """One searchable layer: channels in/out, stride, spatial input size and whether identity may replace it."""

    inp: int
    oup: int
    stride: int
    input_res: int
    identity_allowed: bool


@dataclass(frozen=True)
class ShrinkDefaults:
    """Space-specific ABS defaults of spec §3.1 and §3.7."""

    drop_rule: str  # "global" (SPOS) or "per_layer" (FairNAS)
    drops_per_round: int
    max_rounds: int
    max_flops: float
    lr_horizon_epochs: int
    init: str  # "he_fanout" (SPOS shrinking) or "default" (PyTorch default init)


@dataclass(frozen=True)
class MobileSpace:
    """A MobileNet-like single-path space: stem conv, fixed t=1 block, searchable MBConv layers, 1x1 head."""

    name: str
    stem_channels: int
    first_block_channels: int
    stages: tuple[tuple[int, int, int], ...]  # (channels, repeats, first stride) per stage
    head_channels: int
    identity_in_repeats: bool
    shrink: ShrinkDefaults
    input_size: int = 224
    num_classes: int = 1000
    stem_stride: int = 2
    width_mult: float = 1.0
    layers: tuple[LayerSpec, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        layers, inp, res = [], self.first_block_channels, self.input_size // self.stem_stride
        for channels, repeats, first_stride in self.stages:
            for r in range(repeats):
                stride = first_stride if r == 0 else 1
                # identity needs the same shape in and out: only the repeats (not the first of a stage) allow it
                allowed = self.identity_in_repeats and r > 0
                layers.append(LayerSpec(inp, channels, stride, res, allowed))
                res = math.ceil(res / stride)
                inp = channels
        object.__setattr__(self, "layers", tuple(layers))

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def scaled(self, width_mult: float = 1.0, input_size: int | None = None, num_classes: int | None = None,
               stem_stride: int | None = None) -> "MobileSpace":
        """The same space with channels scaled by ``width_mult`` and another input size / class count."""
        if width_mult <= 0:
            raise ValueError(f"width multiplier must be positive, got {width_mult}")
        w = width_mult / self.width_mult

        def scale(c: int) -> int:
            return c if w == 1 else make_divisible(c * w)

        return dataclasses.replace(
            self,
            stem_channels=scale(self.stem_channels),
            first_block_channels=scale(self.first_block_channels),
            stages=tuple((scale(c), n, s) for c, n, s in self.stages),
            head_channels=scale(self.head_channels),
            input_size=input_size or self.input_size,
            num_classes=num_classes or self.num_classes,
            stem_stride=stem_stride or self.stem_stride,
            width_mult=width_mult,
        )

    def reference(self) -> "MobileSpace":
        """The space at the paper's size (width 1, 224x224, 1000 classes): FLOPs limits are expressed in it."""
        return REFERENCE_SPACES[self.name]

    def initial_operations(self) -> list[list[int]]:
        """The full space: all 6 blocks everywhere, identity appended last where allowed (spec §1.2)."""
        return [list(range(len(BLOCK_KEYS))) + ([IDENTITY] if layer.identity_allowed else []) for layer in self.layers]


GPU_SPACE = MobileSpace(
    name="gpu",
    stem_channels=40,
    first_block_channels=24,
    stages=((32, 4, 2), (56, 4, 2), (112, 4, 2), (128, 4, 1), (256, 4, 2), (432, 1, 1)),
    head_channels=1728,
    identity_in_repeats=True,
    shrink=ShrinkDefaults(drop_rule="global", drops_per_round=7, max_rounds=(21 * 7 - 5 - 1) // 7,
                          max_flops=600e6, lr_horizon_epochs=250, init="he_fanout"),
)
"""SPOS / ProxylessNAS "GPU" space: 21 layers, identity allowed in the 15 non-first layers of each stage."""

FAIRNAS_SPACE = MobileSpace(
    name="fairnas",
    stem_channels=32,
    first_block_channels=16,
    stages=((32, 2, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1)),
    head_channels=1280,
    identity_in_repeats=False,
    shrink=ShrinkDefaults(drop_rule="per_layer", drops_per_round=19, max_rounds=6,
                          max_flops=330e6, lr_horizon_epochs=200, init="default"),
)
"""FairNAS "CPU/mobile" space: 19 layers, 6 ops each, no identity."""

REFERENCE_SPACES = {space.name: space for space in (GPU_SPACE, FAIRNAS_SPACE)}
