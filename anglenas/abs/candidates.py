"""Sampling of child networks that contain a given operator (the original's ``get_random_extend``).

How a child is drawn is the space's (:meth:`~anglenas.spaces.base.SearchSpace.draw_children`, vectorised with
numpy); here a drawn child is kept when it was not drawn before in this round and its FLOPs lie within the limits.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from anglenas.errors import UserError
from anglenas.flops import FlopsTable
from anglenas.spaces.base import SearchSpace


class CandidateSampler:
    """Draws legal, never-seen-before children containing operator (site, op) for one ABS round."""

    def __init__(self, space: SearchSpace, ops: Sequence[Sequence[int]], rng: np.random.Generator,
                 flops: FlopsTable | None = None, min_flops: float = 0.0, max_flops: float = float("inf")) -> None:
        self.space, self.ops, self.rng = space, [list(s) for s in ops], rng
        self.flops, self.min_flops, self.max_flops = flops, min_flops, max_flops
        self.seen: set[bytes] = set()
        self.num_layers = len(ops)

    def sample_containing(self, layer: int, op: int, n: int, max_attempts: int | None = None) -> np.ndarray:
        """Up to ``n`` new legal children with ``op`` in ``layer`` (fewer if ``n * 100`` draws do not find them)."""
        max_attempts = max_attempts if max_attempts is not None else n * 100
        found: list[np.ndarray] = []
        attempts = 0
        while len(found) < n and attempts < max_attempts:
            chunk = min(max(2 * (n - len(found)), 64), max_attempts - attempts)
            archs = self.space.draw_children(self.ops, self.rng, layer, op, chunk)
            attempts += chunk
            if self.flops is not None:
                f = self.flops.batch_flops(archs)
                archs = archs[(f >= self.min_flops) & (f <= self.max_flops)]
            for arch in archs:
                key = arch.astype(np.int8).tobytes()
                if key not in self.seen:
                    self.seen.add(key)
                    found.append(arch)
                    if len(found) == n:
                        break
        return np.array(found, dtype=np.int64).reshape(-1, self.num_layers)


def check_flops_feasible(ops: list[list[int]], flops: FlopsTable, min_flops: float, max_flops: float) -> None:
    """Raise :class:`UserError` when no child of ``ops`` can satisfy the FLOPs limits."""
    lo, hi = flops.bounds(ops)
    if lo > max_flops or hi < min_flops:
        raise UserError(f"no architecture of this space meets the FLOPs limits [{min_flops / 1e6:.1f}M, "
                        f"{max_flops / 1e6:.1f}M]: its architectures range from {lo / 1e6:.1f}M to {hi / 1e6:.1f}M "
                        f"(limits are in real FLOPs at the paper's size); widen --min_flops / --max_flops")
