"""The DARTS / PDARTS search network (quark0/darts ``cnn/model_search.py``): the DARTS space's relaxed supernet.

Each of the 14 edges of a cell is a :class:`~anglenas.spaces.relaxed.MixedOp` over its own primitives
(``site_ops[g][e]``: primitive indices in the order given, an operations file's order for DARTS, index order for
PDARTS' switches). The cells of a kind share one alpha matrix, ``alphas_normal`` / ``alphas_reduce``, of shape
[14, k]: row e holds edge e's weights in its first ``len(site_ops[g][e])`` entries (upstream requires every edge to
keep the same k; an edge with fewer ops leaves the rest of its row unused at 0, an empty edge is a removed edge).
Edge e of node j (j = 0..3) from state s has index ``NODE_OFFSETS[j] + s``. How an edge mixes its candidates is the
supernet's mixing (:mod:`anglenas.spaces.relaxed`); it starts as DARTS' softmax.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from anglenas.errors import UserError
from anglenas.spaces.darts.genotypes import Genotype
from anglenas.spaces.darts.ops import OPS, PRIMITIVES, FactorizedReduce, Identity, ReLUConvBN
from anglenas.spaces.relaxed import RelaxedSupernet, SoftmaxMixing

STEPS = 4
NUM_EDGES = 14
NODE_OFFSETS = (0, 2, 5, 9)
NONE = PRIMITIVES.index("none")
SKIP = PRIMITIVES.index("skip_connect")
SEARCH_CHANNELS, SEARCH_LAYERS = 16, 8
"""Upstream DARTS' search size on CIFAR-10: C=16, 8 cells."""


def full_edge_ops() -> list[list[int]]:
    """The unrestricted space: all 8 primitives on each of the 14 edges."""
    return [list(range(len(PRIMITIVES))) for _ in range(NUM_EDGES)]


def check_edge_ops(edge_ops: Sequence[Sequence[int]]) -> list[list[int]]:
    """``edge_ops`` as plain int lists; :class:`UserError` unless it is 14 lists of distinct primitive indices whose
    first node can be derived (an empty list is a removed edge)."""
    ops = [[int(o) for o in edge] for edge in edge_ops]
    if len(ops) != NUM_EDGES:
        raise UserError(f"a DARTS cell has {NUM_EDGES} edges but the operations list has {len(ops)}")
    for e, edge in enumerate(ops):
        bad = [o for o in edge if not 0 <= o < len(PRIMITIVES)]
        if bad:
            raise UserError(f"edge {e} has op index(es) {bad}; DARTS ops are 0..{len(PRIMITIVES) - 1}")
        if len(set(edge)) != len(edge):
            raise UserError(f"edge {e} lists an op twice: {edge}")
    for e in (0, 1):  # the first node uses both of its edges
        if ops[e] == [NONE]:
            raise UserError(f"edge {e} (input of the first node) holds only 'none'; no cell can be derived")
    return ops


def edge_candidates(C: int, stride: int, ops: Sequence[int], skip_dropout: bool = False) -> list[nn.Module]:
    """The candidates of one edge, as upstream's ``MixedOp``: non-affine ops, pools followed by a non-affine BN;
    ``skip_dropout`` puts a Dropout after a stride-1 skip (PDARTS; its rate is set by ``set_skip_dropout``)."""
    candidates = []
    for index in ops:
        name = PRIMITIVES[index]
        op = OPS[name](C, stride, False)
        if "pool" in name:
            op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
        if skip_dropout and isinstance(op, Identity):
            op = nn.Sequential(op, nn.Dropout(0.0))
        candidates.append(op)
    return candidates


class SearchCell(nn.Module):
    """Preprocessing of the two inputs, then 4 nodes each summing its edges over all earlier states;
    ``make_edge(e, stride)`` builds edge e."""

    def __init__(self, make_edge: Callable[[int, int], nn.Module], C_prev_prev: int, C_prev: int, C: int,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(C_prev_prev, C, affine=False) if reduction_prev
                            else ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(make_edge(NODE_OFFSETS[node] + src, 2 if reduction and src < 2 else 1)
                                   for node in range(STEPS) for src in range(2 + node))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(STEPS):
            offset = NODE_OFFSETS[node]
            states.append(sum(self.edges[offset + j](h) for j, h in enumerate(states)))
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


class SearchNetwork(RelaxedSupernet):
    """Stem (3x3 conv to 3C), ``layers`` cells (reductions at 1/3 and 2/3), global pool, classifier; groups
    ``("normal", "reduce")`` with the alphas ``alphas_normal`` / ``alphas_reduce``.

    ``edge_ops`` are the ops of the normal cells' edges, ``reduce_ops`` those of the reduction cells (default: the
    same; PDARTS' stages drop ops of the two cell kinds separately). The alphas are drawn after every module, as
    upstream, so a seed gives upstream's weights and alphas.
    """

    groups = ("normal", "reduce")

    def __init__(self, C: int, num_classes: int, layers: int, edge_ops: Sequence[Sequence[int]] | None = None,
                 skip_dropout: bool = False, stem_multiplier: int = 3,
                 reduce_ops: Sequence[Sequence[int]] | None = None):
        super().__init__()
        normal = check_edge_ops(edge_ops if edge_ops is not None else full_edge_ops())
        reduce = check_edge_ops(reduce_ops) if reduce_ops is not None else normal
        self.site_ops = [normal, reduce]
        self.C, self.num_classes, self.layers = C, num_classes, layers

        def make_cell(c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool) -> SearchCell:
            group = int(reduction)
            return SearchCell(lambda e, stride: self.mixed_op(group, e, edge_candidates(
                c, stride, self.site_ops[group][e], skip_dropout)), c_pp, c_p, c, reduction, reduction_prev)

        self.stem, self.cells, C_prev = cifar_macro(C, layers, stem_multiplier, make_cell)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        self.alphas_normal = self._new_alphas(normal)
        self.alphas_reduce = self._new_alphas(reduce)
        self.set_mixing(SoftmaxMixing())

    @staticmethod
    def _new_alphas(edge_ops: list[list[int]]) -> nn.Parameter:
        alphas = 1e-3 * torch.randn(NUM_EDGES, max(len(edge) for edge in edge_ops))
        for e, edge in enumerate(edge_ops):
            alphas[e, len(edge):] = 0.0
        return nn.Parameter(alphas)

    @property
    def edge_ops(self) -> list[list[int]]:
        return self.site_ops[0]

    @property
    def reduce_ops(self) -> list[list[int]]:
        return self.site_ops[1]

    @staticmethod
    def is_arch_name(name: str) -> bool:
        return name in ("alphas_normal", "alphas_reduce")

    def alpha(self, group: int, site: int) -> torch.Tensor:
        return (self.alphas_reduce if group else self.alphas_normal)[site, :len(self.site_ops[group][site])]

    def run(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.global_pooling(s1).flatten(1))

    def derive(self, probabilities: list[list[np.ndarray]] | None = None) -> Genotype:
        """DARTS' genotype of the alphas (:func:`derive_cell` of each cell kind)."""
        normal, reduce = probabilities if probabilities is not None else self.probabilities()
        concat = list(range(2, 2 + STEPS))
        return Genotype(normal=derive_cell(normal, self.site_ops[0]), normal_concat=concat,
                        reduce=derive_cell(reduce, self.site_ops[1]), reduce_concat=concat)

    def chosen(self, arch: Genotype) -> list[tuple[int, int, int]]:
        """(group, edge, primitive) of the 16 edges a genotype keeps."""
        out = []
        for group, kind in enumerate(("normal", "reduce")):
            for i, (op, src) in enumerate(getattr(arch, kind)):
                out.append((group, NODE_OFFSETS[i // 2] + src, PRIMITIVES.index(op)))
        return out


def derive_cell(weights: Sequence[Sequence[float]], edge_ops: Sequence[Sequence[int]]) -> list[tuple[str, int]]:
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
