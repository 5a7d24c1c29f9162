"""The two MobileNet-like ImageNet search spaces of ABS (the original's ``SPOS/`` and ``FairNAS/``): "gpu" (SPOS /
ProxylessNAS) and "fairnas".

A space is data: the stem, the fixed first block, the searchable layers and the head. Models, FLOPs tables and
samplers are built from it, so a width multiplier, another input size or class count gives a consistent family
(the embedded CPU demo uses a narrow 32x32 version of the same 21 layers).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from anglenas.errors import UserError
from anglenas.spaces.base import Arch, SearchSpace, ShrinkDefaults, make_divisible
from anglenas.spaces.chain import chain_operations
from anglenas.spaces.mobilenet.blocks import BLOCK_KEYS, IDENTITY, LayerSpec
from anglenas.spaces.mobilenet.flops import measure_table
from anglenas.spaces.mobilenet.network import MobileNetwork, path_state_dict
from anglenas.spaces.mobilenet.relaxed import MobileRelaxedSupernet
from anglenas.spaces.mobilenet.supernet import MobileSuperNet
from anglenas.spaces.registry import register_space
from anglenas.spaces.relaxed import GroupOps


@dataclass(frozen=True)
class MobileSpace(SearchSpace):
    """A MobileNet-like single-path space: stem conv, fixed t=1 block, searchable MBConv layers, 1x1 head.

    Op table: the 6 MBConv blocks in the original's order, then ``identity`` (op id -1, the original's encoding).
    """

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
    published: Mapping[str, list[int]] = field(default_factory=dict, compare=False, hash=False, repr=False)
    layers: tuple[LayerSpec, ...] = field(init=False, compare=False)
    search_min_flops: float = 0.0
    search_max_flops: float = float("inf")
    op_names = (*BLOCK_KEYS, "identity")
    negative_id_names = ("identity",)
    search_demo = {"width_mult": 0.25}
    """``--space gpu --demo`` (or fairnas): the searchers' demos run the space at width 0.25."""

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
               stem_stride: int | None = None, depth: int | None = None) -> "MobileSpace":
        """The same space with channels scaled by ``width_mult`` and another input size / class count."""
        self._no_depth(depth)
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

    def initial_operations(self) -> list[list[int]]:
        """The full space: all 6 blocks everywhere, identity appended last where allowed (the original's order)."""
        return [list(range(len(BLOCK_KEYS))) + ([IDENTITY] if layer.identity_allowed else []) for layer in self.layers]

    @property
    def num_sites(self) -> int:
        return len(self.layers)

    def check_arch(self, arch: Arch) -> list[int]:
        arch = [int(op) for op in arch]
        if len(arch) != self.num_layers:
            raise UserError(f"architecture has {len(arch)} op indices but the {self.name} space has "
                            f"{self.num_layers} layers; give one index per layer")
        for i, (op, layer) in enumerate(zip(arch, self.layers)):
            if not IDENTITY <= op < len(BLOCK_KEYS):
                raise UserError(f"layer {i}: op index {op} is out of range; use 0..{len(BLOCK_KEYS) - 1} "
                                f"or {IDENTITY} for identity")
            if op == IDENTITY and not layer.identity_allowed:
                where = ("the first layer of a stage changes the shape" if self.identity_in_repeats
                         else f"the {self.name} space has no identity op")
                raise UserError(f"layer {i}: identity ({IDENTITY}) is not allowed here ({where}); pick an op 0..5")
        return arch

    # -- models and FLOPs -----------------------------------------------------------------------------------------
    def supernet(self) -> nn.Module:
        return MobileSuperNet(self)

    def network(self, arch: Arch, dropout: float = 0.2) -> nn.Module:
        return MobileNetwork(self, arch, dropout)

    def path_state_dict(self, supernet_state: Mapping[str, torch.Tensor], arch: Arch) -> dict[str, torch.Tensor]:
        return path_state_dict(supernet_state, arch)

    def relaxed_supernet(self, ops: Sequence[Sequence[int]] | GroupOps, *, channels: int | None = None,
                         depth: int | None = None, skip_dropout: bool = False) -> MobileRelaxedSupernet:
        """The ProxylessNAS / FBNet supernet over ``ops`` at this size (:mod:`anglenas.spaces.mobilenet.relaxed`)."""
        return MobileRelaxedSupernet(self, chain_operations(self, ops, channels, depth), skip_dropout)

    def flops_table(self):
        return measure_table(self)

    # -- sampling -------------------------------------------------------------------------------------------------
    def draw_children(self, ops: Sequence[Sequence[int]], rng: np.random.Generator, site: int, op: int,
                      n: int) -> np.ndarray:
        """The original's ``get_random_extend``. GPU space (identity in repeats): every other layer takes a uniform
        non-identity op from its list (its only op if it has one), then the number of identity layers is drawn uniformly
        from 0..k, k = the other layers whose list holds identity, and that many of them become identity. FairNAS: the
        default."""
        if not self.identity_in_repeats:
            return super().draw_children(ops, rng, site, op, n)
        body = [[o for o in s if o != IDENTITY] if len(s) > 1 and IDENTITY in s else list(s) for s in ops]
        archs = super().draw_children(body, rng, site, op, n)
        depth_layers = np.flatnonzero(np.array([IDENTITY in s for s in ops]) & (np.arange(len(ops)) != site))
        if len(depth_layers):
            k = rng.integers(0, len(depth_layers) + 1, size=n)
            order = np.argsort(rng.random((n, len(depth_layers))), axis=1)  # a random permutation per row
            chosen = np.zeros((n, len(depth_layers)), dtype=bool)
            np.put_along_axis(chosen, order, np.arange(len(depth_layers)) < k[:, None], axis=1)
            block = archs[:, depth_layers]
            block[chosen] = IDENTITY
            archs[:, depth_layers] = block
        return archs


FAIRNAS_STEM_OVERCOUNT = 32 * 32 * 112 * 112
"""The original's FairNAS FLOPs table counts a phantom 1x1 32->32 conv at 112x112 in the stem (12,845,056 FLOPs on
every architecture); its FLOPs limits are in those inflated units, ours in real FLOPs."""

GPU_SPACE = MobileSpace(
    name="gpu",
    stem_channels=40,
    first_block_channels=24,
    stages=((32, 4, 2), (56, 4, 2), (112, 4, 2), (128, 4, 1), (256, 4, 2), (432, 1, 1)),
    head_channels=1728,
    identity_in_repeats=True,
    shrink=ShrinkDefaults(drop_rule="global", drops_per_round=7, max_rounds=(21 * 7 - 5 - 1) // 7,
                          max_flops=600e6, lr_horizon_epochs=250, init="he_fanout"),
    search_max_flops=475e6,
    published={"SPOS_ABS": [2, 2, -1, 0, 0, -1, -1, 0, 5, -1, 4, 4, 0, 0, 4, 2, 3, 4, 4, 4, 3],
               "PROXYLESS_ABS": [2, 2, -1, -1, 0, 2, 2, -1, 5, -1, 4, 4, 0, 0, 4, 2, 3, 4, 4, 4, 3]},
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
                          max_flops=330e6 - FAIRNAS_STEM_OVERCOUNT, lr_horizon_epochs=200, init="default"),
    search_min_flops=315e6 - FAIRNAS_STEM_OVERCOUNT,
    search_max_flops=327e6 - FAIRNAS_STEM_OVERCOUNT,
    published={"FAIRNAS_ABS": [4, 2, 4, 2, 2, 2, 5, 2, 4, 4, 2, 2, 2, 4, 5, 4, 2, 2, 5]},
)
"""FairNAS "CPU/mobile" space: 19 layers, 6 ops each, no identity. Its shrinking FLOPs ceiling is the original's
330M in real FLOPs (317.15M)."""



@register_space
def gpu() -> MobileSpace:
    return GPU_SPACE


@register_space
def fairnas() -> MobileSpace:
    return FAIRNAS_SPACE
