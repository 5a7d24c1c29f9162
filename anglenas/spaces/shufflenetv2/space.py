"""The ShuffleNetV2 block-search space of SPOS (Guo et al. 2020; the authors' ``ShuffleNet-Series/OneShot`` code).

20 sites (stages of 4, 4, 8, 4 blocks with 64, 160, 320, 640 channels; the first block of a stage has stride 2),
four ops at each: ShuffleNet block 3x3, 5x5, 7x7 and Shuffle-Xception, in the authors' choice order 0..3. Stem: 3x3
conv stride 2 to 16 channels; head: 1x1 conv to 1024, global average pool, dropout 0.1, linear without bias.

FLOPs convention (the authors' ``get_flops``, in which the SPOS limit of 330M is expressed): multiply-accumulates of
Conv2d and Linear only, batch 1; the bias-free classifier counts ``in * out``. See docs/shufflenetv2.md.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

from anglenas.errors import UserError
from anglenas.flops import FlopsTable, chain_flops
from anglenas.spaces.base import Arch, SearchSpace, ShrinkDefaults, make_divisible
from anglenas.spaces.chain import chain_operations
from anglenas.spaces.registry import register_space
from anglenas.spaces.relaxed import GroupOps
from anglenas.spaces.shufflenetv2.model import (
    ShuffleNetwork,
    ShuffleSuperNet,
    Site,
    conv_bn_relu,
    make_block,
    path_state_dict,
)
from anglenas.spaces.shufflenetv2.relaxed import ShuffleRelaxedSupernet

OP_NAMES = ("shufflenet_3x3", "shufflenet_5x5", "shufflenet_7x7", "xception_3x3")
STEM_CHANNELS = 16
STAGES = ((64, 4), (160, 4), (320, 8), (640, 4))  # (output channels, blocks); the first block has stride 2
HEAD_CHANNELS = 1024
NUM_SITES = sum(blocks for _, blocks in STAGES)
DROPS_PER_ROUND = len(OP_NAMES) + 1  # ABS on SPOS: op_num + 1


@dataclass(frozen=True)
class ShuffleNetV2Space(SearchSpace):
    """The SPOS ShuffleNetV2 space at one width, input size, class count and stem stride.

    Channels are the paper's times ``width_mult``, rounded to multiples of 8 (so that every block splits evenly).
    """

    name: str = "shufflenetv2"
    width_mult: float = 1.0
    input_size: int = 224
    num_classes: int = 1000
    stem_stride: int = 2
    stem_channels: int = field(init=False, compare=False)
    head_channels: int = field(init=False, compare=False)
    sites: tuple[Site, ...] = field(init=False, compare=False, repr=False)

    op_names: ClassVar[tuple[str, ...]] = OP_NAMES
    shrink: ClassVar[ShrinkDefaults] = ShrinkDefaults(
        drop_rule="global", drops_per_round=DROPS_PER_ROUND,
        max_rounds=(NUM_SITES * len(OP_NAMES) - 1) // DROPS_PER_ROUND, max_flops=330e6, lr_horizon_epochs=250,
        init="he_fanout")
    """Global drop like ABS on SPOS: ``op_num + 1`` = 5 drops a round, at most (80 - 1) // 5 = 15 rounds (the ABS
    formula); shrinking stops once the space holds <= 1e6 archs (from 4^20 = 1.1e12), which takes at least 31
    drops, so 7 rounds or more."""
    published: ClassVar[Mapping[str, Arch]] = {
        "SPOS_SHUFFLENETV2": [2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3],
        "MMRAZOR_SPOS_SHUFFLENETV2": [2, 0, 2, 0, 3, 1, 1, 0, 0, 1, 0, 1, 0, 3, 1, 2, 2, 0, 1, 3],
    }
    """SPOS authors' searched block architecture (SinglePathOneShot README) and MMRazor's own searched subnet."""
    default_dropout: ClassVar[float] = 0.1
    search_demo: ClassVar[Mapping[str, Any]] = {"width_mult": 0.25}
    """``--space shufflenetv2 --demo``: the searchers' demos run the space at width 0.25."""
    search_max_flops: ClassVar[float] = 330e6
    site_kind: ClassVar[str] = "block"

    def __post_init__(self) -> None:
        if self.width_mult <= 0:
            raise UserError(f"width multiplier must be positive, got {self.width_mult}")
        if self.stem_stride not in (1, 2):
            raise UserError(f"stem stride must be 1 (small inputs) or 2, got {self.stem_stride}")

        def scale(c: int) -> int:
            return c if self.width_mult == 1 else make_divisible(c * self.width_mult)

        inp, res, sites = scale(STEM_CHANNELS), math.ceil(self.input_size / self.stem_stride), []
        for channels, blocks in STAGES:
            oup = scale(channels)
            if oup <= inp:
                raise UserError(f"width {self.width_mult} gives a stage of {oup} channels after {inp}; a stride-2 "
                                f"shuffle block needs more output than input channels (use a larger width)")
            for b in range(blocks):
                stride = 2 if b == 0 else 1
                sites.append(Site(inp, oup, stride, res))
                res, inp = math.ceil(res / stride), oup
        object.__setattr__(self, "stem_channels", scale(STEM_CHANNELS))
        object.__setattr__(self, "head_channels", scale(HEAD_CHANNELS))
        object.__setattr__(self, "sites", tuple(sites))

    @property
    def final_res(self) -> int:
        """Spatial size of the head's input."""
        return math.ceil(self.sites[-1].input_res / self.sites[-1].stride)

    def initial_operations(self) -> list[list[int]]:
        return [list(range(len(OP_NAMES))) for _ in self.sites]

    def scaled(self, width_mult: float = 1.0, input_size: int | None = None, num_classes: int | None = None,
               stem_stride: int | None = None, depth: int | None = None) -> "ShuffleNetV2Space":
        self._no_depth(depth)
        return dataclasses.replace(self, width_mult=width_mult, input_size=input_size or self.input_size,
                                   num_classes=num_classes or self.num_classes,
                                   stem_stride=stem_stride or self.stem_stride)

    # -- models ---------------------------------------------------------------------------------------------------
    def supernet(self) -> nn.Module:
        return ShuffleSuperNet(self)

    def network(self, arch: Arch, dropout: float = default_dropout) -> nn.Module:
        return ShuffleNetwork(self, self.check_arch(arch), dropout)

    def path_state_dict(self, supernet_state: Mapping[str, torch.Tensor], arch: Arch) -> dict[str, torch.Tensor]:
        return path_state_dict(supernet_state, self.check_arch(arch))

    def relaxed_supernet(self, ops: Sequence[Sequence[int]] | GroupOps, *, channels: int | None = None,
                         depth: int | None = None, skip_dropout: bool = False) -> ShuffleRelaxedSupernet:
        """The ProxylessNAS / FBNet supernet over ``ops`` at this size (:mod:`anglenas.spaces.shufflenetv2.relaxed`)."""
        return ShuffleRelaxedSupernet(self, chain_operations(self, ops, channels, depth), skip_dropout)

    # -- FLOPs ----------------------------------------------------------------------------------------------------
    @functools.cache
    def flops_table(self) -> FlopsTable:
        """Closed-form FLOPs per (site, op), each branch of a block counted at the block's input size."""
        with torch.device("meta"):
            pre, pre_params = chain_flops(conv_bn_relu(3, self.stem_channels, 3, self.stem_stride), self.input_size)
            head, head_params = chain_flops(conv_bn_relu(self.sites[-1].oup, self.head_channels, 1, 1),
                                            self.final_res)
            classifier = self.head_channels * self.num_classes  # bias-free linear: in * out MACs and weights
            flops, params = [], []
            for site in self.sites:
                blocks = [make_block(op, site) for op in range(len(OP_NAMES))]
                flops.append([sum(chain_flops(b, site.input_res)[0] for b in block.branches) for block in blocks])
                params.append([sum(p.numel() for p in block.parameters()) for block in blocks])
        return FlopsTable(space=self.name, input_size=self.input_size, width_mult=self.width_mult,
                          num_classes=self.num_classes, stem_stride=self.stem_stride, pre=pre,
                          post=head + classifier, layers=flops, pre_params=pre_params,
                          post_params=head_params + classifier, layer_params=params)

    def counted_flops(self, arch: Arch) -> int:
        """FLOPs of :meth:`network` of ``arch`` from torch's FLOP counter on the meta device: its conv and matmul
        FLOPs are 2 x MACs, which halved is the authors' convention exactly (the classifier has no bias)."""
        from torch.utils.flop_counter import FlopCounterMode

        with torch.device("meta"):
            model = self.network(arch).eval()
            x = torch.empty(1, 3, self.input_size, self.input_size)
        with FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops() // 2


@register_space
def shufflenetv2() -> ShuffleNetV2Space:
    """The SPOS ShuffleNetV2 space at the paper's size (224x224, 1000 classes)."""
    return ShuffleNetV2Space()
