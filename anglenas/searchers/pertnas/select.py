"""The op decisions of PertNAS as pure functions of score matrices and switches, on any space.

Scores are ``acc_after - acc_before`` of perturb-val: the LOWEST score marks the op whose removal hurts the most,
which is kept. Ties go to the op earlier among the site's candidates (:attr:`Sites.candidates`: the original's op
order on the DARTS space), as ``argsort``/``argmin`` over the original's indices do. The DARTS cell's topology rule
is :func:`anglenas.searchers.pertnas.cell.topology_select`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from anglenas.searchers.pertnas.cell import Switches
from anglenas.searchers.pertnas.sites import Sites


def init_switches(sites: Sites, op_cap: int, rng: np.random.Generator) -> Switches:
    """A member's initial switches: ``op_cap`` distinct random candidates of each site (the original's
    ``_init_switches``)."""
    out = []
    for s, ops in enumerate(sites.candidates):
        pick = rng.choice(len(ops), size=min(op_cap, len(ops)), replace=False)
        out.append(sites.ordered(s, [ops[i] for i in pick]))
    return out


def coarse_select(avg_scores: np.ndarray, sites: Sites, keep: int = 2) -> Switches:
    """Per site, the ``keep`` candidates with the lowest mean score (``avg_scores[site, op id]``)."""
    out = []
    for s, ops in enumerate(sites.candidates):
        ranked = sorted(range(len(ops)), key=lambda i: (avg_scores[s, ops[i]], i))
        out.append(sites.ordered(s, [ops[i] for i in ranked[:keep]]))
    return out


def fine_select(sites: Sites, site: int, ops: Sequence[int], scores: Sequence[float]) -> int:
    """The op of ``site`` (of ``ops``, scored by ``scores``) whose removal hurt the most."""
    return min(zip(ops, scores), key=lambda pair: (pair[1], sites.rank(site, pair[0])))[0]
