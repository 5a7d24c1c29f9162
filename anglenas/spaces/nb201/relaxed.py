"""NAS-Bench-201's DARTS network (xautodl's ``TinyNetworkDARTS``) as the space's relaxed supernet.

The NB201 macro (:func:`~anglenas.spaces.nb201.supernet.macro`: stem, 3 stages of ``depth`` search cells with a
residual reduction between them, BN + ReLU, pooling, linear); each search cell's 6 edges are mixed ops over the
edge's ops (BN without affine parameters, as the SPOS supernet's cells). One weight matrix ``alphas`` [6, k] is
shared by every cell (xautodl's ``arch_parameters``, initialised to ``1e-3 * N(0, 1)``); edge ``e`` with ``n`` ops
uses ``alphas[e, :n]`` (k is the largest edge's op count). :meth:`NB201RelaxedSupernet.derive` takes the argmax op
of every edge, ``none`` included, as ``TinyNetworkDARTS.genotype``. An edge given no ops is left out of its cell
(it derives to ``none``).
"""
from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from anglenas.spaces.nb201.cells import EDGES, NONE, NUM_EDGES, SKIP
from anglenas.spaces.nb201.supernet import macro, make_op
from anglenas.spaces.relaxed import MixedOp, RelaxedSupernet


class RelaxedCell(nn.Module):
    """4 nodes; node i = sum over j < i of mixed op ``i<-j`` on node j; the output is node 3."""

    def __init__(self, edges: list[MixedOp | None], channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.edges = nn.ModuleList(e if e is not None else nn.Identity() for e in edges)
        self.present = [e is not None for e in edges]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in range(1, 4):
            terms = [self.edges[e](nodes[j]) for e, (i, j) in enumerate(EDGES) if i == node and self.present[e]]
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
        return nodes[3]


class NB201RelaxedSupernet(RelaxedSupernet):
    """NB201's DARTS network over ``ops`` (op ids per edge); ``channels`` C and ``depth`` cells per stage."""

    groups: ClassVar[tuple[str, ...]] = ("cell",)
    empty_ops: ClassVar[tuple[int, ...]] = (NONE,)

    def __init__(self, ops: Sequence[Sequence[int]], num_classes: int, channels: int, depth: int,
                 skip_dropout: bool = False) -> None:
        super().__init__()
        self.site_ops = [[[int(op) for op in site] for site in ops]]

        def cell(c: int) -> RelaxedCell:
            return RelaxedCell([self.mixed_op(0, e, [self._candidate(op, c, skip_dropout) for op in site])
                                if site else None for e, site in enumerate(self.site_ops[0])], c)

        self.stem, self.layers, c = macro(channels, depth, cell)
        self.cells = [m for m in self.layers if isinstance(m, RelaxedCell)]
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        width = max(1, max(len(site) for site in self.site_ops[0]))
        self.alphas = nn.Parameter(1e-3 * torch.randn(NUM_EDGES, width))

    @staticmethod
    def _candidate(op: int, channels: int, skip_dropout: bool) -> nn.Module:
        module = make_op(op, channels)
        return nn.Sequential(module, nn.Dropout(0.0)) if skip_dropout and op == SKIP else module

    def run(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.classifier(self.pool(self.lastact(x)).flatten(1))

    # -- architecture weights -------------------------------------------------------------------------------------
    def alpha(self, group: int, site: int) -> torch.Tensor:
        return self.alphas[site, :len(self.site_ops[0][site])]

    @staticmethod
    def is_arch_name(name: str) -> bool:
        return name == "alphas"

    def derive(self, probabilities: list[list[np.ndarray]] | None = None) -> list[int]:
        """The most probable op of every edge (``none`` included; ties: the first in the edge's list)."""
        probs = self.probabilities() if probabilities is None else probabilities
        return [site[int(np.argmax(p))] if site else NONE for site, p in zip(self.site_ops[0], probs[0])]
