"""FLOPs lookup tables (the original's ``utils/flops_lookup_table_{gpu,cpu}.py``) of every search space, and an
independent counter.

Counting convention (the original's, through its ``thop`` copy): only Conv2d and Linear count, as
multiply-accumulates for convs, ``C_in * out_elements * k_h * k_w / groups``, and ``(2 * in - 1) * out`` for a
Linear. A table holds the fixed parts (``pre`` + ``post``) and the cost of every (site, op); an architecture
costs ``pre + post + sum(layers[site][op])``. Each space measures its own table (``SearchSpace.flops_table``);
:func:`counted_macs` runs a network under torch's FLOP counter to check it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from anglenas.errors import UserError


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
    """FLOPs (and params) of the fixed parts and of every op id at every site of a space at one size.

    ``layers[site][op]`` covers the whole op table (ops without cost, such as identity, are 0); negative op ids
    index from the end as in Python."""

    space: str
    input_size: int
    width_mult: float
    num_classes: int
    stem_stride: int
    pre: int
    post: int
    layers: list[list[int]]  # layers[site][op] for every op of the table
    pre_params: int
    post_params: int
    layer_params: list[list[int]]

    def arch_flops(self, arch: Sequence[int]) -> int:
        """FLOPs of one architecture: pre + post + its blocks (the original's ``get_arch_flops``)."""
        self._check_length(len(arch))
        return self.pre + self.post + sum(self.layers[i][int(op)] for i, op in enumerate(arch))

    def arch_params(self, arch: Sequence[int]) -> int:
        """Parameters of the stand-alone network of ``arch`` (BN included, dropout has none)."""
        self._check_length(len(arch))
        return self.pre_params + self.post_params + sum(self.layer_params[i][int(op)] for i, op in enumerate(arch))

    def batch_flops(self, archs: np.ndarray) -> np.ndarray:
        """FLOPs of many architectures at once: ``archs`` is an int array [N, layers]."""
        archs = np.asarray(archs)
        self._check_length(archs.shape[1])
        table = np.asarray(self.layers, dtype=np.int64)
        return self.pre + self.post + table[np.arange(archs.shape[1]), archs].sum(axis=1)

    def bounds(self, ops: Sequence[Sequence[int]]) -> tuple[int, int]:
        """The smallest and largest FLOPs of any architecture of ``ops``."""
        lo = sum(min(self.layers[i][op] for op in site) for i, site in enumerate(ops))
        hi = sum(max(self.layers[i][op] for op in site) for i, site in enumerate(ops))
        return self.pre + self.post + lo, self.pre + self.post + hi

    def _check_length(self, n: int) -> None:
        if n != len(self.layers):
            raise UserError(f"architecture has {n} layers; the {self.space} space has {len(self.layers)}")

    def to_json(self) -> str:
        """JSON with one layer per line."""
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in asdict(self).items()]
        return "{\n" + ",\n".join(lines) + "\n}\n"

    @classmethod
    def load(cls, path: str | Path, num_ops: int = 0) -> "FlopsTable":
        """Read a table written by :meth:`to_json`; rows shorter than ``num_ops`` (a MobileNet table of the first
        version: 6 columns without the identity column) get zero columns appended."""
        try:
            doc = json.loads(Path(path).read_text())
            table = cls(**doc)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
            raise UserError(f"cannot read FLOPs table {path}: {exc}") from None
        width = max([num_ops, *(len(row) for row in table.layers)])
        for rows in (table.layers, table.layer_params):
            for row in rows:
                row.extend([0] * (width - len(row)))
        return table


def counted_macs(build: Callable[[], nn.Module], input_size: int) -> int:
    """FLOPs of the network ``build()`` returns, counted by running it on the meta device under torch's FLOP
    counter and converted to the original's convention (multiply-accumulates; ``(2 * in - 1) * out`` for a Linear).
    An independent check of the closed-form tables."""
    with torch.device("meta"):
        model = build().eval()
        x = torch.empty(1, 3, input_size, input_size)
    ran: list[nn.Linear] = []  # only the Linears that run (an auxiliary head does not in eval mode)
    hooks = [m.register_forward_hook(lambda m, i, o: ran.append(m)) for m in model.modules()
             if isinstance(m, nn.Linear)]
    with FlopCounterMode(display=False) as counter:
        model(x)
    for hook in hooks:
        hook.remove()
    return counter.get_total_flops() // 2 + sum((m.in_features - 1) * m.out_features for m in ran)
