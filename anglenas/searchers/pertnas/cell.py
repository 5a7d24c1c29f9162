"""PertNAS' rules of the DARTS cell: its op order, the fine-grained edge order, the topology selection, the genotype.

Only the DARTS space has them (a cell of 4 nodes that each keep 2 of their incoming edges); on every other space
PertNAS stops after the fine-grained op selection (:mod:`anglenas.searchers.pertnas.sites`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from anglenas.spaces.darts.genotypes import CONCAT, Genotype
from anglenas.spaces.darts.model_search import NODE_OFFSETS, NUM_EDGES, STEPS
from anglenas.spaces.darts.ops import PRIMITIVES

PERTNAS_OPS = ("skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
               "dil_conv_5x5")
"""The original's 7-op list in its index order (its ``PRIMITIVES``); ``none`` is no candidate. Candidates are
visited in this order and ties between equal scores go to the op earlier in it, as the original's loops and
``argmin``/``argsort`` over its indices do."""
CANDIDATES = tuple(PRIMITIVES.index(name) for name in PERTNAS_OPS)
"""The candidate op ids (indices of :data:`~anglenas.spaces.darts.ops.PRIMITIVES`) in the original's order."""
REMOVED = PRIMITIVES.index("none")
"""The op id a removed edge's perturbation is logged under (it masks nothing: the original "perturbed" its sentinel
``none`` there, with no effect, in the topology phase)."""
FINE_ORDER = (13, 12, 8, 11, 7, 4, 9, 10, 5, 6, 2, 3, 0, 1)
"""The original's fixed edge order of the fine-grained op selection (``fine_grained_op_select``)."""
ORIGINAL_CHANNELS, ORIGINAL_LAYERS = 16, 5
"""The original's search network: C = 16 channels, 5 cells (one cell type; the README: to save search cost)."""
TOPOLOGY_NODES = (1, 2, 3)
"""Nodes whose incoming edges are pruned to 2 (node 0 has exactly 2)."""

Switches = list[list[int]]
"""The ops of every site (op ids); on the DARTS space an empty list is an edge removed by the topology selection
(the network builds it without ops: it adds nothing, as the original's ``none`` sentinel 100 did)."""


def node_edges(node: int) -> list[int]:
    """The edge ids entering intermediate node ``node`` (0..3): inputs c_{k-2}, c_{k-1}, then earlier nodes."""
    return list(range(NODE_OFFSETS[node], NODE_OFFSETS[node] + node + 2))


def node_order(rng: np.random.Generator) -> list[int]:
    """The (seeded) random order in which nodes 1-3 get their topology decided (the original: unseeded)."""
    return [int(n) for n in rng.permutation(TOPOLOGY_NODES)]


def topology_select(node: int, switches: Switches, edge_scores: dict[int, float], keep: int = 2) -> Switches:
    """``switches`` with all but the ``keep`` lowest-scored incoming edges of ``node`` removed (ties: the lower
    edge id, as ``argsort``)."""
    edges = sorted(node_edges(node), key=lambda e: (edge_scores.get(e, np.inf), e))
    out = [list(s) for s in switches]
    for e in edges[keep:]:
        out[e] = []
    return out


def prune(switches: Switches, node: int, kept: Sequence[int]) -> Switches:
    """``switches`` with the incoming edges of ``node`` other than ``kept`` removed."""
    return [[] if e in node_edges(node) and e not in kept else list(s) for e, s in enumerate(switches)]


def to_genotype(switches: Switches) -> Genotype:
    """``(op name, input state)`` of every surviving edge, in node order; reduce = normal (the original's
    ``topology_to_genotype``)."""
    if len(switches) != NUM_EDGES:
        raise ValueError(f"a cell has {NUM_EDGES} edges, got {len(switches)} switch lists")
    cell = []
    for node in range(STEPS):
        for state, e in enumerate(node_edges(node)):
            if len(switches[e]) > 1:
                raise ValueError(f"edge {e} still holds {len(switches[e])} ops")
            cell.extend((PRIMITIVES[op], state) for op in switches[e])
    return Genotype(normal=cell, normal_concat=list(CONCAT), reduce=list(cell), reduce_concat=list(CONCAT))
