"""The PertNAS search network: the space's relaxed supernet over a member's switches, with fixed 0/1 op weights.

A member is described by its *switches*: for each site the ops it sums (op ids of the space). The network is
``space.relaxed_supernet(switches, channels=C, depth=layers)`` with a :class:`~anglenas.spaces.relaxed.FixedMixing`:
a site outputs ``sum_k m_k op_k(x)`` where the masks ``m_k`` are plain floats (1.0, or 0.0 while perturbed) shared
by every place of the site, so perturbing an op removes it everywhere at once (on the DARTS space: from all 5
cells, normal and reduction alike, which use the same switches). An *expanded* site lists all its candidates: a
unit-weight sum of them. There are no architecture weights to learn; only the network weights are trained.
"""
from __future__ import annotations

from typing import Sequence

from anglenas.spaces.base import SearchSpace
from anglenas.spaces.relaxed import FixedMixing, RelaxedSupernet

Masks = list[list[float]]
"""``masks[site][k]``: the weight of the site's k-th op (1.0, or 0.0 while perturbed)."""


def masked_network(space: SearchSpace, ops: Sequence[Sequence[int]], channels: int | None,
                   depth: int | None) -> tuple[RelaxedSupernet, Masks]:
    """The relaxed supernet of ``space`` over ``ops`` (one list per site, every group alike) summing each site's
    ops with unit weights, and the masks to perturb them with."""
    net = space.relaxed_supernet([list(site) for site in ops], channels=channels, depth=depth)
    masks = [[1.0] * len(site) for site in ops]
    for group in net.site_ops:
        if [len(site) for site in group] != [len(site) for site in masks]:
            raise ValueError(f"the {space.name} relaxed supernet did not build the ops it was given")
    net.set_mixing(FixedMixing([masks] * len(net.groups)))  # one mask list per site, shared by the groups
    return net, masks


def expand_site(switches: Sequence[Sequence[int]], site: int, ops: Sequence[int]) -> list[list[int]]:
    """``switches`` with ``site`` holding all of ``ops`` (the member's other sites untouched)."""
    out = [list(s) for s in switches]
    out[site] = list(ops)
    return out
