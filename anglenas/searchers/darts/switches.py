"""PDARTS' end-of-stage rules (chenxin061/pdarts ``train_search.py``) as pure functions.

On any space: every site drops its k weakest ops (:func:`drop_weakest`; ``none`` first in the last stage). On the
DARTS cell, after the last stage, upstream's *switches* (14 x 8 booleans per cell kind) give the genotype: each node
keeps its 2 strongest incoming edges, and the skip-connect restriction yields one genotype per cap of 8..0
skip-connects in the normal cell (:func:`final_genotypes`). Probabilities are per edge, in the order of the edge's
switched-on ops (a stage's alpha columns); edges may hold different numbers of ops.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from anglenas.spaces.darts.genotypes import Genotype
from anglenas.spaces.darts.model_search import NODE_OFFSETS, NONE, NUM_EDGES, SKIP, STEPS
from anglenas.spaces.darts.ops import PRIMITIVES

Switches = list[list[bool]]
Probs = Sequence[Sequence[float]]


def min_k(weights: Sequence[float], k: int) -> list[int]:
    """Positions of the k smallest weights (ties: the lower position)."""
    w = np.array(weights, dtype=float)
    out = []
    for _ in range(k):
        i = int(np.argmin(w))
        out.append(i)
        w[i] = np.inf
    return out


def min_k_no_zero(weights: Sequence[float], site_ops: Sequence[int], k: int, none: int = NONE) -> list[int]:
    """Like :func:`min_k`, but op ``none`` (when the site has it) is dropped first (upstream's
    ``get_min_k_no_zero``)."""
    if k <= 0 or none not in site_ops:
        return min_k(weights, k)
    at = list(site_ops).index(none)
    rest = [i for i in range(len(site_ops)) if i != at]
    return [at] + [rest[i] for i in min_k([weights[i] for i in rest], k - 1)]


def drop_weakest(site_ops: Sequence[int], weights: Sequence[float], k: int, none: int | None = None) -> list[int]:
    """``site_ops`` without its ``k`` weakest ops (never fewer than one op left); ``none`` (an op id) goes first."""
    k = min(k, len(site_ops) - 1)
    drop = set(min_k_no_zero(weights, site_ops, k, none) if none is not None else min_k(weights, k))
    return [op for i, op in enumerate(site_ops) if i not in drop]


def _padded(probs: Probs) -> np.ndarray:
    """Per-edge probabilities as a [edges, max ops] float array, short rows padded with 0."""
    width = max(len(p) for p in probs)
    return np.array([list(p) + [0.0] * (width - len(p)) for p in probs], dtype=float)


# -- the DARTS cell: upstream's switches ---------------------------------------------------------------------------

def switches_from_ops(edge_ops: Sequence[Sequence[int]]) -> Switches:
    return [[op in edge for op in range(len(PRIMITIVES))] for edge in edge_ops]


def switched_on(switches: Switches) -> list[list[int]]:
    """The primitive indices on each edge, in index order (the column order of that stage's alphas)."""
    return [[op for op, on in enumerate(edge) if on] for edge in switches]


def drop_ops(switches: Switches, probs: Probs, k: int, none_first: bool) -> Switches:
    """Switch off the k weakest ops of every edge (``none`` first when ``none_first``)."""
    kept = [drop_weakest(ops, probs[e][:len(ops)], k, NONE if none_first else None)
            for e, ops in enumerate(switched_on(switches))]
    return switches_from_ops(kept)


def keep_two_edges(switches: Switches, edge_strength: Sequence[float]) -> Switches:
    """Keep, per node, the 2 incoming edges of largest strength (node 0 keeps both); switch off the rest."""
    keep = {0, 1}
    for node in range(1, STEPS):
        offset, n = NODE_OFFSETS[node], node + 2
        ranked = sorted(range(n), key=lambda s: edge_strength[offset + s])
        keep.update({offset + ranked[-1], offset + ranked[-2]})
    return [list(edge) if e in keep else [False] * len(edge) for e, edge in enumerate(switches)]


def edge_strength(probs: Probs, switches_before: Switches) -> np.ndarray:
    """The probabilities with ``none``'s zeroed where the edge held it (a new [edges, max ops] array; the
    strength of an edge is its row's maximum)."""
    p = _padded(probs)
    for e, edge in enumerate(switches_before):
        if edge[NONE]:
            p[e][0] = 0.0
    return p


def parse_switches(switches: Switches) -> list[tuple[str, int]]:
    """(op, input state) of every switched-on op, edge by edge."""
    on = switched_on(switches)
    return [(PRIMITIVES[op], s) for node in range(STEPS) for s in range(node + 2)
            for op in on[NODE_OFFSETS[node] + s]]


def skip_count(switches: Switches) -> int:
    return sum(edge[SKIP] for edge in switches)


def restrict_skips(switches: Switches, switches_before: Switches, probs: Probs, max_skip: int, k: int
                   ) -> tuple[Switches, np.ndarray]:
    """Upstream's skip-connect restriction: while the cell has more than ``max_skip`` skip-connects, zero the
    weakest remaining skip probability, re-derive 1 op per edge (``k`` dropped from ``switches_before``, ``none``
    first) and the 2 edges per node. ``probs`` holds ``switches_before``'s columns with ``none`` zeroed.

    Fix: upstream loops forever when the weakest skip cannot go (an edge of [none, skip] keeps skip, since
    ``none`` is dropped first); here only skips whose probability is still above 0 are candidates, and the loop
    stops when none is left."""
    probs = _padded(probs)
    while skip_count(switches) > max_skip:
        candidates = []
        for e in range(NUM_EDGES):
            if switches[e][SKIP]:
                column = switched_on(switches_before)[e].index(SKIP)
                if probs[e][column] > 0:
                    candidates.append((probs[e][column], e, column))
        if not candidates:
            break
        _, e, column = min(candidates)
        probs[e][column] = 0.0
        one_op = drop_ops(switches_before, probs, k, none_first=True)
        switches = keep_two_edges(one_op, probs.max(axis=1))
    return switches, probs


def final_genotypes(probs_normal: Probs, probs_reduce: Probs, before_normal: Switches, before_reduce: Switches,
                    k: int) -> dict[int, Genotype]:
    """The genotype for each skip cap 8..0 after the last stage (k ops dropped per edge, ``none`` first)."""
    concat = list(range(2, 2 + STEPS))
    cells = {}
    for kind, probs, before in (("normal", probs_normal, before_normal), ("reduce", probs_reduce, before_reduce)):
        strength = edge_strength(probs, before)
        cells[kind] = (keep_two_edges(drop_ops(before, probs, k, none_first=True), strength.max(axis=1)), strength)
    reduce = parse_switches(cells["reduce"][0])
    switches, probs = cells["normal"]
    out = {}
    for cap in range(8, -1, -1):
        switches, probs = restrict_skips(switches, before_normal, probs, cap, k)
        out[cap] = Genotype(parse_switches(switches), concat, reduce, concat)
    return out
