"""The NAS-Bench-201 SPOS supernet (the original's ``TinyNetworkSPOS``), its op table and the angle's weight protocol.

Macro (C=16, N=5): stem conv3x3 + BN, N search cells at C, a residual reduction block to 2C, N cells, a
reduction to 4C, N cells, then BN + ReLU, global average pooling and a linear classifier. Every search cell
holds all 5 operations on each of its 6 edges and runs the ones its own path picks: ``forward(x, path)`` takes
one cell tuple for every cell, or a list with a cell tuple per search cell. The space around it (sites, FLOPs,
sampler) is :mod:`anglenas.spaces.nb201.space`.
"""
from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from anglenas.spaces.darts.ops import OPS as DARTS_OPS
from anglenas.spaces.darts.ops import Identity, ReLUConvBN, Zero
from anglenas.spaces.nb201.cells import EDGES, NONE, NUM_EDGES, OPS, Cell

Path = Sequence[int] | Sequence[Sequence[int]]


OP_BUILDERS: dict[str, Callable[[int, bool], nn.Module]] = {
    "none": lambda c, affine: Zero(1),
    "skip_connect": lambda c, affine: Identity(),
    "nor_conv_1x1": lambda c, affine: ReLUConvBN(c, c, 1, 1, 0, affine),
    "nor_conv_3x3": lambda c, affine: ReLUConvBN(c, c, 3, 1, 1, affine),
    "avg_pool_3x3": lambda c, affine: DARTS_OPS["avg_pool_3x3"](c, 1, affine),
}
"""The op table: name -> builder(channels, affine BN), in the order of :data:`~anglenas.spaces.nb201.cells.OPS`;
the DARTS family's modules (NB201's ``ReLUConvBN`` is DARTS' with the conv at ``op[1]``)."""
assert tuple(OP_BUILDERS) == OPS


_LEGACY_KEY = re.compile(r"(edges\.\d+(?:\.\d+)?|conv_[ab])\.([12])\."
                         r"(weight|bias|running_mean|running_var|num_batches_tracked)$")


def upgrade_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of a network of this family saved before NB201 took DARTS' ``ReLUConvBN`` (conv at ``X.1``,
    BN at ``X.2``) renamed to today's names (``X.op.1``, ``X.op.2``); today's names pass unchanged."""
    return {_LEGACY_KEY.sub(r"\1.op.\2.\3", k): v for k, v in state.items()}


def accept_legacy_keys(module: nn.Module) -> None:
    """Let ``module.load_state_dict`` read checkpoints written before the rename (:func:`upgrade_keys`)."""

    def hook(state_dict, prefix, *_):
        for key in [k for k in state_dict if k.startswith(prefix)]:
            new = prefix + _LEGACY_KEY.sub(r"\1.op.\2.\3", key[len(prefix):])
            if new != key:
                state_dict[new] = state_dict.pop(key)

    module._register_load_state_dict_pre_hook(hook)


def make_op(op: int, channels: int, affine: bool = False) -> nn.Module:
    """Operation ``op`` on ``channels`` channels; search cells use BN without affine parameters (the original's),
    stand-alone networks affine BN."""
    return OP_BUILDERS[OPS[op]](channels, affine)


def pool_constant(channels: int, device: torch.device | None = None) -> torch.Tensor:
    """The fixed [C, 3, 3] tensor of 1/9 that stands for a 3x3 average pooling in the angle's vector
    (``get_arch_angle``); not a parameter, so it is the same in W0 and W."""
    return torch.full((channels, 3, 3), 1.0 / 9.0, dtype=torch.float64, device=device)


class SearchCell(nn.Module):
    """4 nodes; node i = sum over j < i of op_{i<-j}(node j); the output is node 3."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.edges = nn.ModuleList(nn.ModuleList(make_op(op, channels) for op in range(len(OPS)))
                                   for _ in range(NUM_EDGES))

    def forward(self, x: torch.Tensor, cell: Cell) -> torch.Tensor:
        nodes = [x]
        for node in range(1, 4):
            terms = [self.edges[e][cell[e]](nodes[j]) for e, (i, j) in enumerate(EDGES)
                     if i == node and cell[e] != NONE]
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
        return nodes[3]


class ResidualReduction(nn.Module):
    """ResNet basic block with stride 2: ReLU-conv3x3(s2)-BN, ReLU-conv3x3-BN, plus avgpool2 + conv1x1."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, affine=True)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine=True)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.downsample(x)


def macro(channels: int, cells_per_stage: int, make_cell: Callable[[int], nn.Module]
          ) -> tuple[nn.Sequential, nn.ModuleList, int]:
    """NB201's macro skeleton: a 3x3 stem, then 3 stages of ``cells_per_stage`` cells (``make_cell(C)``) with a
    residual reduction doubling the channels between stages. Returns (stem, layers, final channels)."""
    stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
    layers: list[nn.Module] = []
    c = channels
    for stage in range(3):
        if stage:
            layers.append(ResidualReduction(c, 2 * c))
            c *= 2
        layers.extend(make_cell(c) for _ in range(cells_per_stage))
    return stem, nn.ModuleList(layers), c


class NB201SuperNet(nn.Module):
    """The SPOS supernet of the NB201 space; ``search_cells`` lists its 3N search cells in order."""

    def __init__(self, num_classes: int = 10, channels: int = 16, cells_per_stage: int = 5) -> None:
        super().__init__()
        self.stem, self.layers, c = macro(channels, cells_per_stage, SearchCell)
        self.search_cells = [m for m in self.layers if isinstance(m, SearchCell)]
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        accept_legacy_keys(self)

    def cells_of(self, path: Path) -> list[Cell]:
        """One cell tuple per search cell from a shared cell or a per-cell list."""
        if len(path) == NUM_EDGES and all(np.isscalar(op) for op in path):
            return [tuple(int(op) for op in path)] * len(self.search_cells)  # type: ignore[arg-type]
        if len(path) != len(self.search_cells):
            raise ValueError(f"a path is one cell or {len(self.search_cells)} cells, got {len(path)} entries")
        return [tuple(int(op) for op in cell) for cell in path]  # type: ignore[union-attr]

    def forward(self, x: torch.Tensor, path: Path) -> torch.Tensor:
        cells = iter(self.cells_of(path))
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x, next(cells)) if isinstance(layer, SearchCell) else layer(x)
        return self.classifier(self.pool(self.lastact(x)).flatten(1))

    # -- the angle's weight protocol (anglenas.spaces.base.AngleWeights) ------------------------------------------
    @property
    def num_instances(self) -> int:
        """Search cells: each may hold its own cell, all share the 6 sites."""
        return len(self.search_cells)

    def fixed_weights(self) -> list[torch.Tensor]:
        """Weights every architecture shares, in the original's order (``get_arch_angle``): lastact BN, classifier,
        stem conv and BN, then per reduction block conv_a (+BN), conv_b (+BN), downsample conv."""
        out = [*self.lastact[0].parameters(), self.classifier.weight, self.classifier.bias, *self.stem.parameters()]
        for layer in self.layers:
            if isinstance(layer, ResidualReduction):
                out += [*layer.conv_a.parameters(), *layer.conv_b.parameters(), layer.downsample[1].weight]
        return out

    def choice_weights(self, site: int, op: int, instance: int = 0) -> list[torch.Tensor]:
        """Weights op ``op`` on edge ``site`` of search cell ``instance`` adds to the vector: a conv its weight,
        avg_pool the constant :func:`pool_constant`, skip and none nothing."""
        cell = self.search_cells[instance]
        module = cell.edges[site][op % len(OPS)]
        if isinstance(module, ReLUConvBN):
            return [module.op[1].weight]
        if isinstance(module, nn.AvgPool2d):
            return [pool_constant(cell.channels, self.classifier.weight.device)]
        return []


__all__ = ["NB201SuperNet", "OP_BUILDERS", "ResidualReduction", "SearchCell", "accept_legacy_keys", "make_op",
           "pool_constant", "upgrade_keys"]
