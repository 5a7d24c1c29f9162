"""The stand-alone network of one NAS-Bench-201 cell (NB201's ``TinyNetwork`` with ``InferCell``s).

Macro (C=16, N=5 at NB201's size): stem conv3x3 + BN, N cells at C, a residual reduction block to 2C, N cells,
a reduction to 4C, N cells, then BN + ReLU, global average pooling and a linear classifier. Every cell runs
the ops its architecture fixes on its 6 edges; its convolutions use affine BN, as NB201's stand-alone networks.

Module names follow :class:`~anglenas.spaces.nb201.supernet.NB201SuperNet` with the op index left out
(supernet ``layers.{i}.edges.{e}.{op}.…`` -> here ``layers.{i}.edges.{e}.…``), so a supernet path maps one to
one onto this network (:func:`path_state_dict`).
"""
from __future__ import annotations

import functools
import re
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from anglenas.spaces.nb201.cells import EDGES, NONE, NUM_EDGES, Cell, check_cell
from anglenas.spaces.nb201.supernet import ResidualReduction, accept_legacy_keys, macro, make_op

Cells = Cell | Sequence[Cell]


class FixedCell(nn.Module):
    """4 nodes; node i = sum over j < i of op_{i<-j}(node j) (``none`` edges left out); the output is node 3."""

    def __init__(self, cell: Cell, channels: int) -> None:
        super().__init__()
        self.cell, self.channels = tuple(int(op) for op in cell), channels
        self.edges = nn.ModuleList(make_op(op, channels, affine=True) for op in self.cell)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in range(1, 4):
            terms = [self.edges[e](nodes[j]) for e, (i, j) in enumerate(EDGES) if i == node and self.cell[e] != NONE]
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
        return nodes[3]


def per_cell(cells: Cells, count: int) -> list[Cell]:
    """One cell tuple per search cell from a cell shared by all (6 op indices) or a list of ``count`` cells."""
    if len(cells) == NUM_EDGES and all(np.isscalar(op) or (torch.is_tensor(op) and op.dim() == 0) for op in cells):
        cells = [cells] * count  # type: ignore[list-item]
    if len(cells) != count:
        raise ValueError(f"give one cell or {count} cells, got {len(cells)} entries")
    out = [tuple(int(op) for op in cell) for cell in cells]  # type: ignore[union-attr]
    for cell in out:
        check_cell(cell)
    return out


class NB201Network(nn.Module):
    """NB201's stand-alone network of ``cell`` (one cell for every search cell, or a list with one per cell)."""

    def __init__(self, cell: Cells, num_classes: int = 10, channels: int = 16, cells_per_stage: int = 5) -> None:
        super().__init__()
        cells = iter(per_cell(cell, 3 * cells_per_stage))
        self.stem, self.layers, c = macro(channels, cells_per_stage, lambda c: FixedCell(next(cells), c))
        self.cells = [m for m in self.layers if isinstance(m, FixedCell)]
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        accept_legacy_keys(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.classifier(self.pool(self.lastact(x)).flatten(1))

    def fixed_weights(self) -> list[torch.Tensor]:
        """Weights every architecture has, in the original's order (``get_arch_angle``): lastact BN, classifier, stem
        conv and BN, then per reduction block conv_a (+BN), conv_b (+BN), downsample conv."""
        out = [*self.lastact[0].parameters(), self.classifier.weight, self.classifier.bias, *self.stem.parameters()]
        for layer in self.layers:
            if isinstance(layer, ResidualReduction):
                out += [*layer.conv_a.parameters(), *layer.conv_b.parameters(), layer.downsample[1].weight]
        return out


@functools.lru_cache(maxsize=4096)
def counted_cost(cell: Cell, num_classes: int = 10, input_size: int = 32, channels: int = 16,
                 cells_per_stage: int = 5) -> tuple[int, int]:
    """(FLOPs, parameters) of the network of ``cell`` in NB201's convention, counted by running it on the meta
    device under torch's FLOP counter: FLOPs are multiply-accumulates of the convolutions and the classifier
    plus the classifier's bias additions; parameters include every BN's affine pair."""
    with torch.device("meta"):
        model = NB201Network(tuple(cell), num_classes, channels, cells_per_stage).eval()
        x = torch.empty(1, 3, input_size, input_size)
    with FlopCounterMode(display=False) as counter:
        model(x)
    macs = counter.get_total_flops() // 2  # torch counts 2 FLOPs per multiply-accumulate
    return macs + num_classes, sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=64)
def _op_costs(num_classes: int, input_size: int, channels: int) -> np.ndarray:
    """[1 + ops, 2]: counted (FLOPs, params) of the all-``none`` network, then the increase from putting op k on
    one edge of the single cell of each stage (one cell per stage; all edges of a cell cost the same)."""
    size = (num_classes, input_size, channels, 1)
    base = np.array(counted_cost((NONE,) * NUM_EDGES, *size), dtype=np.int64)
    rows = [base] + [np.array(counted_cost((op,) + (NONE,) * (NUM_EDGES - 1), *size)) - base for op in range(5)]
    return np.stack(rows)


def cell_cost(cell: Cell, num_classes: int = 10, input_size: int = 32, channels: int = 16,
              cells_per_stage: int = 5) -> tuple[int, int]:
    """:func:`counted_cost` of ``cell`` assembled from six counted one-cell-per-stage networks: costs add up
    over edges and over the identical cells of a stage."""
    table = _op_costs(num_classes, input_size, channels)
    flops, params = table[0] + cells_per_stage * table[1 + np.asarray(cell, dtype=np.int64)].sum(0)
    return int(flops), int(params)


_EDGE_KEY = re.compile(r"^layers\.(\d+)\.edges\.(\d+)\.(\d+)\.(.+)$")


def path_state_dict(supernet_state: Mapping[str, torch.Tensor], cells: Cells) -> dict[str, torch.Tensor]:
    """The weights of path ``cells`` of an :class:`~anglenas.spaces.nb201.supernet.NB201SuperNet` state dict, named for
    :class:`NB201Network` (loadable with ``strict=True``). The supernet's search cells have BN without affine
    parameters; their stand-alone counterparts get the identity affine (gamma 1, beta 0), so the network
    computes exactly what the supernet path computes."""
    cell_layers = sorted({int(m.group(1)) for k in supernet_state if (m := _EDGE_KEY.match(k))})
    cell_of = dict(zip(cell_layers, per_cell(cells, len(cell_layers))))
    out: dict[str, torch.Tensor] = {}
    for key, value in supernet_state.items():
        m = _EDGE_KEY.match(key)
        if m is None:
            out[key] = value
            continue
        layer, edge, op, rest = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
        if cell_of[layer][edge] != op:
            continue
        out[f"layers.{layer}.edges.{edge}.{rest}"] = value
        if rest.endswith("running_mean"):  # BN without affine in the supernet: identity affine here
            bn = f"layers.{layer}.edges.{edge}.{rest[:-len('running_mean')]}"
            out.setdefault(bn + "weight", torch.ones_like(value))
            out.setdefault(bn + "bias", torch.zeros_like(value))
    return out


__all__ = ["FixedCell", "NB201Network", "cell_cost", "counted_cost", "path_state_dict", "per_cell"]
