"""FLOPs lookup tables of the MobileNet spaces (spec §2.6).

Counting convention (the original's, through its ``thop`` copy): only Conv2d and Linear count, as
multiply-accumulates for convs, ``C_in * out_elements * k_h * k_w / groups``, and ``(2 * in - 1) * out`` for the
classifier. The table is counted from the real modules, which fixes the original FairNAS table's phantom 1x1
conv in the stem block (+12.85M on every FairNAS architecture).
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from anglenas.errors import UserError
from anglenas.nn.blocks import InvertedResidual, conv_bn_relu6, make_block
from anglenas.spaces import BLOCK_KEYS, IDENTITY, MobileSpace, get_space


def chain_flops(module: nn.Module, input_size: int) -> tuple[int, int]:
    """(FLOPs, params) of a module whose convs and linears run one after another, for one square input.

    Walks the Conv2d / Linear modules in registration order and tracks the spatial size in closed form, which is
    exact for the stems, blocks and heads here (residual adds and pooling change no conv's input). Params count
    every parameter of the module (BN included).
    """
    total, res = 0, input_size
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            (k_h, k_w), (s_h, _), (p_h, _) = m.kernel_size, m.stride, m.padding
            res = (res + 2 * p_h - m.dilation[0] * (k_h - 1) - 1) // s_h + 1
            k = k_h * k_w + (1 if m.bias is not None else 0)
            total += m.in_channels * m.out_channels * res * res * k // m.groups
        elif isinstance(m, nn.Linear):
            total += (2 * m.in_features - 1) * m.out_features
    return total, sum(p.numel() for p in module.parameters())


@dataclass(frozen=True)
class FlopsTable:
    """Per-op FLOPs (and params) of every layer of a space at one size; identity costs 0."""

    space: str
    input_size: int
    width_mult: float
    num_classes: int
    stem_stride: int
    pre: int
    post: int
    layers: list[list[int]]  # layers[i][op] for op in 0..5
    pre_params: int
    post_params: int
    layer_params: list[list[int]]

    def arch_flops(self, arch: Sequence[int]) -> int:
        """FLOPs of one architecture: pre + post + its blocks (spec §2.6 ``get_arch_flops``)."""
        self._check_length(len(arch))
        return self.pre + self.post + sum(self.layers[i][op] for i, op in enumerate(arch) if op != IDENTITY)

    def arch_params(self, arch: Sequence[int]) -> int:
        """Parameters of the stand-alone network of ``arch`` (BN included, dropout has none)."""
        self._check_length(len(arch))
        return self.pre_params + self.post_params + sum(
            self.layer_params[i][op] for i, op in enumerate(arch) if op != IDENTITY)

    def batch_flops(self, archs: np.ndarray) -> np.ndarray:
        """FLOPs of many architectures at once: ``archs`` is an int array [N, layers]."""
        archs = np.asarray(archs)
        self._check_length(archs.shape[1])
        table = np.zeros((len(self.layers), len(BLOCK_KEYS) + 1), dtype=np.int64)
        table[:, : len(BLOCK_KEYS)] = self.layers  # column -1 (identity) stays 0
        return self.pre + self.post + table[np.arange(archs.shape[1]), archs].sum(axis=1)

    def _check_length(self, n: int) -> None:
        if n != len(self.layers):
            raise UserError(f"architecture has {n} layers; the {self.space} space has {len(self.layers)}")

    def to_json(self) -> str:
        """JSON with one layer per line."""
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in asdict(self).items()]
        return "{\n" + ",\n".join(lines) + "\n}\n"

    @classmethod
    def load(cls, path: str | Path) -> "FlopsTable":
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise UserError(f"cannot read FLOPs table {path}: {exc}") from None


def build_flops_table(space: MobileSpace) -> FlopsTable:
    """Measure the table of ``space`` at its own width, input size and class count."""
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return _measure(space)


def _measure(s: MobileSpace) -> FlopsTable:
    pre, pre_params = chain_flops(
        nn.Sequential(conv_bn_relu6(3, s.stem_channels, 3, s.stem_stride),
             InvertedResidual(s.stem_channels, s.first_block_channels, 3, 1, 1)),
        s.input_size)
    final_res = math.ceil(s.layers[-1].input_res / s.layers[-1].stride)
    head = nn.Sequential(conv_bn_relu6(s.layers[-1].oup, s.head_channels, 1, 1), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(s.head_channels, s.num_classes))
    post, post_params = chain_flops(head, final_res)
    flops, params = [], []
    for layer in s.layers:
        costs = [chain_flops(make_block(op, layer.inp, layer.oup, layer.stride), layer.input_res)
                 for op in range(len(BLOCK_KEYS))]
        flops.append([c[0] for c in costs])
        params.append([c[1] for c in costs])
    return FlopsTable(s.name, s.input_size, s.width_mult, s.num_classes, s.stem_stride, pre, post, flops,
                      pre_params, post_params, params)


@functools.lru_cache(maxsize=None)
def reference_table(space_name: str) -> FlopsTable:
    """The table at the paper's size (224x224, width 1, 1000 classes); FLOPs limits are expressed in it."""
    return build_flops_table(get_space(space_name))
