"""The PertNAS search network (spec §2): 5 cells of one discrete cell type, fixed 0/1 op weights.

A member is described by its *switches*: for each of the 14 edges the ops it sums (ids of
:data:`anglenas.spaces.darts.ops.PRIMITIVES`; an empty list is a removed edge). Every cell uses the same switches; the
reduction cells (1 and 3) only stride the edges from their two inputs. An edge outputs ``sum_i m_i * op_i(x)``
where the masks ``m_i`` are plain floats (1.0, or 0.0 while perturbed), shared by all cells, so perturbing an op
removes it from every cell at once. An *expanded* edge lists all candidate ops: a unit-weight sum of them.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from anglenas.spaces.darts.model_search import NODE_OFFSETS, NUM_EDGES, SearchCell, cifar_macro
from anglenas.spaces.darts.ops import PRIMITIVES

PERTNAS_OPS = ("skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
               "dil_conv_5x5")
"""The original's 7-op list in its index order (spec §2); ``none`` is not a candidate. Ties between equal scores
go to the op earlier in this list, as ``argmin``/``argsort`` over the original's indices do."""
CANDIDATES = tuple(sorted((PRIMITIVES.index(n) for n in PERTNAS_OPS), key=lambda i: PERTNAS_OPS.index(PRIMITIVES[i])))
"""Candidate op ids (PRIMITIVES indices) in the original's order."""

Switches = list[list[int]]


def original_rank(op: int) -> int:
    """Position of op id ``op`` in the original's op order (the tie-break key)."""
    return PERTNAS_OPS.index(PRIMITIVES[op])


def node_edges(node: int) -> list[int]:
    """The edge ids entering intermediate node ``node`` (0..3): inputs c_{k-2}, c_{k-1}, then earlier nodes."""
    return list(range(NODE_OFFSETS[node], NODE_OFFSETS[node] + node + 2))


class PertNasNetwork(nn.Module):
    """Stem (3x3 conv to 3C, affine BN), ``layers`` cells (reductions at layers//3 and 2*layers//3), global
    average pooling, linear classifier. Non-affine BN inside the cells, as in the DARTS search network."""

    def __init__(self, switches: Sequence[Sequence[int]], C: int = 16, num_classes: int = 10, layers: int = 5,
                 stem_multiplier: int = 3) -> None:
        super().__init__()
        if len(switches) != NUM_EDGES:
            raise ValueError(f"a cell has {NUM_EDGES} edges, got {len(switches)} switch lists")
        self.switches: Switches = [sorted(int(o) for o in edge) for edge in switches]
        self.masks: list[list[float]] = [[1.0] * len(edge) for edge in self.switches]
        self.stem, self.cells, C_prev = cifar_macro(
            C, layers, stem_multiplier,
            lambda c_pp, c_p, c, reduction, reduction_prev: SearchCell(self.switches, c_pp, c_p, c, reduction,
                                                                      reduction_prev))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, self.masks)
        return self.classifier(self.global_pooling(s1).flatten(1))


def expand_edge(switches: Switches, edge: int, allowed: Sequence[int]) -> Switches:
    """``switches`` with ``edge`` replaced by all ``allowed`` ops (the member's other edges untouched)."""
    out = [list(s) for s in switches]
    out[edge] = sorted(allowed)
    return out
