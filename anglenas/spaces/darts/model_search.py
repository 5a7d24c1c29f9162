"""The DARTS / PDARTS search network (upstream ``model_search.py``, spec §1.5, §9).

Each of the 14 edges of a cell holds a :class:`MixedOp` over its own primitives (``edge_ops[e]``, primitive
indices in the order given: an operations file's order for DARTS, index order for PDARTS' switches). All cells of
a kind share one alpha matrix of shape [14, k], so every edge needs the same number k of ops. Edge e of node j
(j = 0..3) from state s has index ``NODE_OFFSETS[j] + s``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anglenas.errors import UserError
from anglenas.spaces.darts.genotypes import Genotype
from anglenas.spaces.darts.ops import OPS, PRIMITIVES, FactorizedReduce, Identity, ReLUConvBN

STEPS = 4
NUM_EDGES = 14
NODE_OFFSETS = (0, 2, 5, 9)
NONE = PRIMITIVES.index("none")
SKIP = PRIMITIVES.index("skip_connect")


def full_edge_ops() -> list[list[int]]:
    """The unrestricted space: all 8 primitives on each of the 14 edges."""
    return [list(range(len(PRIMITIVES))) for _ in range(NUM_EDGES)]


def check_edge_ops(edge_ops: Sequence[Sequence[int]]) -> list[list[int]]:
    """``edge_ops`` as plain int lists; :class:`UserError` unless it is 14 non-empty lists of equal length."""
    ops = [[int(o) for o in edge] for edge in edge_ops]
    if len(ops) != NUM_EDGES:
        raise UserError(f"a DARTS cell has {NUM_EDGES} edges but the operations list has {len(ops)}")
    for e, edge in enumerate(ops):
        if not edge:
            raise UserError(f"edge {e} of the operations list is empty")
        bad = [o for o in edge if not 0 <= o < len(PRIMITIVES)]
        if bad:
            raise UserError(f"edge {e} has op index(es) {bad}; DARTS ops are 0..{len(PRIMITIVES) - 1}")
        if len(set(edge)) != len(edge):
            raise UserError(f"edge {e} lists an op twice: {edge}")
    counts = sorted({len(edge) for edge in ops})
    if len(counts) > 1:
        raise UserError(f"edges keep unequal numbers of ops ({', '.join(map(str, counts))}); DARTS' alphas have "
                        f"shape [14, ops per edge], so every edge needs the same count: shrink with the per-edge "
                        f"rule (drop 1 op per edge per round) until all edges keep the same number")
    for e in (0, 1):  # the first node uses both of its edges
        if ops[e] == [NONE]:
            raise UserError(f"edge {e} (input of the first node) holds only 'none'; no cell can be derived")
    return ops


class MixedOp(nn.Module):
    """Weighted sum of the edge's ops; pools are followed by a non-affine BN; ``skip_dropout`` wraps a stride-1
    skip in a Dropout (PDARTS)."""

    def __init__(self, C: int, stride: int, ops: Sequence[int], skip_dropout: bool = False):
        super().__init__()
        self.ops = nn.ModuleList()
        for index in ops:
            name = PRIMITIVES[index]
            op = OPS[name](C, stride, False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            if skip_dropout and isinstance(op, Identity):
                op = nn.Sequential(op, nn.Dropout(0.0))
            self.ops.append(op)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops))


class SearchCell(nn.Module):
    def __init__(self, edge_ops: list[list[int]], C_prev_prev: int, C_prev: int, C: int, reduction: bool,
                 reduction_prev: bool, skip_dropout: bool = False):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(C_prev_prev, C, affine=False) if reduction_prev
                            else ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList()
        for node in range(STEPS):
            for src in range(2 + node):
                stride = 2 if reduction and src < 2 else 1
                self.edges.append(MixedOp(C, stride, edge_ops[NODE_OFFSETS[node] + src], skip_dropout))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(STEPS):
            offset = NODE_OFFSETS[node]
            states.append(sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states)))
        return torch.cat(states[-STEPS:], dim=1)


def cifar_macro(C: int, layers: int, stem_multiplier: int, make_cell: Callable[..., nn.Module]
                ) -> tuple[nn.Sequential, nn.ModuleList, int]:
    """DARTS' CIFAR macro-architecture: a 3x3 stem to ``stem_multiplier * C`` channels, then ``layers`` cells whose
    channels double at the reduction cells (1/3 and 2/3 of the depth); ``make_cell(C_prev_prev, C_prev, C_curr,
    reduction, reduction_prev)`` builds one. Returns (stem, cells, output channels)."""
    C_curr = stem_multiplier * C
    stem = nn.Sequential(nn.Conv2d(3, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
    C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
    cells = nn.ModuleList()
    reduction_prev = False
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        if reduction:
            C_curr *= 2
        cells.append(make_cell(C_prev_prev, C_prev, C_curr, reduction, reduction_prev))
        reduction_prev = reduction
        C_prev_prev, C_prev = C_prev, STEPS * C_curr
    return stem, cells, C_prev


class SearchNetwork(nn.Module):
    """Stem (3x3 conv to 3C), ``layers`` cells (reductions at 1/3 and 2/3), global pool, classifier.

    ``edge_ops`` are the ops of the normal cells' edges, ``reduce_ops`` those of the reduction cells (default: the
    same; PDARTS' stages drop ops of the two cell kinds separately).

    ``alphas_normal`` / ``alphas_reduce`` are parameters of shape [14, k]; :meth:`weights` lists the others.
    """

    def __init__(self, C: int, num_classes: int, layers: int, edge_ops: Sequence[Sequence[int]] | None = None,
                 skip_dropout: bool = False, stem_multiplier: int = 3,
                 reduce_ops: Sequence[Sequence[int]] | None = None):
        super().__init__()
        self.edge_ops = check_edge_ops(edge_ops if edge_ops is not None else full_edge_ops())
        self.reduce_ops = check_edge_ops(reduce_ops) if reduce_ops is not None else self.edge_ops
        self.C, self.num_classes, self.layers, self.skip_dropout = C, num_classes, layers, skip_dropout
        self.stem, self.cells, C_prev = cifar_macro(
            C, layers, stem_multiplier,
            lambda c_pp, c_p, c, reduction, reduction_prev: SearchCell(
                self.reduce_ops if reduction else self.edge_ops, c_pp, c_p, c, reduction, reduction_prev,
                skip_dropout))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(NUM_EDGES, len(self.edge_ops[0])))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(NUM_EDGES, len(self.reduce_ops[0])))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def weights(self) -> list[nn.Parameter]:
        """The network weights (every parameter but the alphas)."""
        return [p for name, p in self.named_parameters() if not name.startswith("alphas_")]

    def set_skip_dropout(self, p: float) -> None:
        """PDARTS: the dropout rate on (stride-1) skip-connects."""
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_normal = F.softmax(self.alphas_normal, dim=-1)
        w_reduce = F.softmax(self.alphas_reduce, dim=-1)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return self.classifier(self.global_pooling(s1).flatten(1))

    def probabilities(self) -> tuple[np.ndarray, np.ndarray]:
        """Softmax of the normal and reduce alphas (float64 numpy arrays)."""
        return tuple(F.softmax(a.detach().double(), dim=-1).cpu().numpy() for a in self.arch_parameters())

    def genotype(self) -> Genotype:
        normal, reduce = self.probabilities()
        return Genotype(normal=derive_cell(normal, self.edge_ops), normal_concat=list(range(2, 2 + STEPS)),
                        reduce=derive_cell(reduce, self.reduce_ops), reduce_concat=list(range(2, 2 + STEPS)))


def derive_cell(weights: np.ndarray, edge_ops: Sequence[Sequence[int]]) -> list[tuple[str, int]]:
    """DARTS' discretisation: per node the 2 incoming edges with the largest non-``none`` weight, each with its
    best non-``none`` op (``weights[e][i]`` belongs to primitive ``edge_ops[e][i]``; ties go to the lower index)."""

    def best(e: int) -> tuple[float, int]:
        scored = [(weights[e][i], op) for i, op in enumerate(edge_ops[e]) if op != NONE]
        if not scored:
            return -np.inf, NONE
        top = max(range(len(scored)), key=lambda i: (scored[i][0], -i))
        return scored[top]

    gene = []
    for node in range(STEPS):
        offset = NODE_OFFSETS[node]
        sources = sorted(range(node + 2), key=lambda s: -best(offset + s)[0])[:2]
        for s in sources:
            gene.append((PRIMITIVES[best(offset + s)[1]], s))
    return gene
