"""What PertNAS searches in a space: the candidate ops of every site, the order it decides sites in, the result.

PertNAS runs on any space with a relaxed supernet. Population phase, coarse and fine-grained op selection work per
site everywhere; what differs between spaces is gathered here:

- **Candidates.** On the DARTS space, PertNAS' 7 ops (``none`` is no candidate: edges are removed by the topology
  selection instead), visited and tie-broken in the original's order (:data:`~anglenas.searchers.pertnas.cell.
  PERTNAS_OPS`). Elsewhere, every op the site allows, in the space's order; NAS-Bench-201's ``none`` included: it is
  the only way an NB201 cell drops an edge, and its perturbation removes nothing, so its score is the change that
  fine-tuning alone brings: a real op is kept over ``none`` only when removing it hurts more than removing nothing.
- **Fine-grained order.** The original's fixed edge order on the DARTS space; the reverse site order elsewhere (the
  sites nearest the output first, as the original starts with the last node's edges).
- **Result.** On the DARTS space the topology selection follows and the result is a genotype; elsewhere the one op
  per site the fine-grained selection keeps is the architecture, in the space's encoding.

Switches (the ops of every site) are kept in the space's order of the site, the order the network builds them in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from anglenas.errors import UserError
from anglenas.operations import Operations
from anglenas.searchers.pertnas.cell import CANDIDATES, FINE_ORDER, Switches, to_genotype
from anglenas.spaces.base import SearchSpace
from anglenas.spaces.darts.space import DartsSpace


@dataclass(frozen=True)
class Sites:
    """The sites PertNAS decides in ``space`` (see the module docstring)."""

    space: SearchSpace
    candidates: list[list[int]]
    """The candidate op ids of every site, in the order they are visited and ties are broken in."""
    fine_order: tuple[int, ...]
    darts_cell: bool
    """Whether the DARTS cell's topology selection follows the op selection."""

    @classmethod
    def of(cls, operations: Operations) -> "Sites":
        """The sites of ``operations`` (a space restricted by an operations file)."""
        space = operations.space
        if isinstance(space, DartsSpace):
            candidates = [[op for op in CANDIDATES if op in site] for site in operations.ops]
            empty = [e for e, site in enumerate(candidates) if not site]
            if empty:
                raise UserError(f"edge(s) {empty} of the operations keep only 'none'; PertNAS needs a real op on "
                                f"every edge of the DARTS cell (it removes edges by its topology selection)")
            return cls(space, candidates, FINE_ORDER, True)
        full = space.initial_operations()
        candidates = [[op for op in full[s] if op in site] for s, site in enumerate(operations.ops)]
        return cls(space, candidates, tuple(reversed(range(len(candidates)))), False)

    @property
    def num_sites(self) -> int:
        return len(self.candidates)

    def rank(self, site: int, op: int) -> int:
        """The tie-break key of ``op`` at ``site``: its place among the site's candidates."""
        return self.candidates[site].index(op)

    def ordered(self, site: int, ops: Sequence[int]) -> list[int]:
        """``ops`` of ``site`` in the space's order (the order the network builds them in)."""
        full = self.space.initial_operations()[site]
        return sorted((int(op) for op in ops), key=full.index)

    def visiting(self, site: int, ops: Sequence[int]) -> list[int]:
        """``ops`` of ``site`` in candidate order (the order perturb-val visits them in)."""
        return sorted((int(op) for op in ops), key=lambda op: self.rank(site, op))

    def columns(self) -> list[int]:
        """The op ids that are a candidate somewhere, in candidate order (the columns of a score heatmap)."""
        if self.darts_cell:
            return list(CANDIDATES)
        table = [self.space.op_id(name) for name in self.space.op_names]
        return [op for op in table if any(op in site for site in self.candidates)]

    def architecture(self, switches: Switches) -> Any:
        """The searched architecture of switches holding one op per site: a genotype on the DARTS space, else one
        op id per site."""
        if self.darts_cell:
            return to_genotype(switches)
        many = [s for s, ops in enumerate(switches) if len(ops) != 1]
        if many:
            raise ValueError(f"site(s) {many} do not hold exactly one op")
        return self.space.check_arch([ops[0] for ops in switches])
