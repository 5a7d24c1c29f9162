"""The decisions of PertNAS (spec §3.A-D) as pure functions of score matrices and switches.

Scores are ``acc_after - acc_before`` of perturb-val: the LOWEST score marks the op or edge whose removal hurts
the most, which is kept. Ties go to the op earlier in the original's op list (:data:`PERTNAS_OPS`) and to the
lower edge id, as ``argsort``/``argmin`` over the original's indices do.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from anglenas.searchers.pertnas.model import Switches, node_edges, original_rank
from anglenas.spaces.darts.genotypes import CONCAT, Genotype
from anglenas.spaces.darts.model_search import STEPS
from anglenas.spaces.darts.ops import PRIMITIVES

FINE_ORDER = (13, 12, 8, 11, 7, 4, 9, 10, 5, 6, 2, 3, 0, 1)
"""The fixed edge order of the fine-grained op selection (spec §3.C)."""
TOPOLOGY_NODES = (1, 2, 3)
"""Nodes whose incoming edges are pruned to 2 (node 0 has exactly 2)."""


def init_switches(allowed: Sequence[Sequence[int]], op_cap: int, rng: np.random.Generator) -> Switches:
    """A member's initial cell: ``op_cap`` distinct random ops of each edge's allowed ops (spec §3.A.1)."""
    out = []
    for ops in allowed:
        ops = sorted(ops, key=original_rank)
        pick = rng.choice(len(ops), size=min(op_cap, len(ops)), replace=False)
        out.append(sorted(ops[i] for i in pick))
    return out


def coarse_select(avg_scores: np.ndarray, allowed: Sequence[Sequence[int]], keep: int = 2) -> Switches:
    """Per edge, the ``keep`` allowed ops with the lowest mean score (``avg_scores[edge, op id]``)."""
    out = []
    for e, ops in enumerate(allowed):
        ranked = sorted(ops, key=lambda op: (avg_scores[e, op], original_rank(op)))
        out.append(sorted(ranked[:keep]))
    return out


def fine_select(ops: Sequence[int], scores: Sequence[float]) -> int:
    """The op (of ``ops``, scored by ``scores``) whose removal hurt the most (spec §3.C.2)."""
    return min(zip(ops, scores), key=lambda pair: (pair[1], original_rank(pair[0])))[0]


def topology_select(node: int, switches: Switches, edge_scores: dict[int, float], keep: int = 2) -> Switches:
    """``switches`` with all but the ``keep`` lowest-scored incoming edges of ``node`` removed (spec §3.D.4)."""
    edges = sorted(node_edges(node), key=lambda e: (edge_scores.get(e, np.inf), e))
    out = [list(s) for s in switches]
    for e in edges[keep:]:
        out[e] = []
    return out


def node_order(rng: np.random.Generator) -> list[int]:
    """The (seeded) random order in which nodes 1-3 get their topology decided (the original: unseeded)."""
    return [int(n) for n in rng.permutation(TOPOLOGY_NODES)]


def to_genotype(switches: Switches) -> Genotype:
    """``(op name, input state)`` of every surviving edge, in node order; reduce = normal (spec §3 output)."""
    cell = []
    for node in range(STEPS):
        for state, e in enumerate(node_edges(node)):
            if len(switches[e]) > 1:
                raise ValueError(f"edge {e} still holds {len(switches[e])} ops")
            cell.extend((PRIMITIVES[op], state) for op in switches[e])
    return Genotype(normal=cell, normal_concat=list(CONCAT), reduce=list(cell), reduce_concat=list(CONCAT))

