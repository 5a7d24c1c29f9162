"""Sampling of child networks that contain a given operator (spec §3.3), vectorised with numpy.

GPU space (``uniform_depth``): every other layer takes a uniform non-identity op from its list (its only op if
it has one), then the number of identity layers is drawn uniformly from 0..k, k = the other layers whose list
holds identity, and that many of them become identity. FairNAS space: every other layer uniform over its list.
A sample is legal when it was not drawn before in this round and its FLOPs lie within the limits.
"""
from __future__ import annotations

import numpy as np

from anglenas.errors import UserError
from anglenas.flops import FlopsTable
from anglenas.spaces import IDENTITY


class CandidateSampler:
    """Draws legal, never-seen-before children containing operator (layer, op) for one ABS round."""

    def __init__(self, ops: list[list[int]], rng: np.random.Generator, uniform_depth: bool,
                 flops: FlopsTable | None = None, min_flops: float = 0.0, max_flops: float = float("inf")) -> None:
        self.ops, self.rng, self.uniform_depth = ops, rng, uniform_depth
        self.flops, self.min_flops, self.max_flops = flops, min_flops, max_flops
        self.seen: set[bytes] = set()
        self.num_layers = len(ops)
        # per-layer choices of the "other layers" draw, padded to a rectangle
        choices = [self._body_choices(layer) for layer in ops]
        width = max(len(c) for c in choices)
        self._choices = np.array([c + [c[0]] * (width - len(c)) for c in choices], dtype=np.int64)
        self._counts = np.array([len(c) for c in choices])
        self._has_identity = np.array([IDENTITY in layer for layer in ops])

    def _body_choices(self, layer: list[int]) -> list[int]:
        if self.uniform_depth and len(layer) > 1 and IDENTITY in layer:
            return [op for op in layer if op != IDENTITY]
        return list(layer)

    def _draw(self, layer: int, op: int, n: int) -> np.ndarray:
        rng, L = self.rng, self.num_layers
        picks = (rng.random((n, L)) * self._counts).astype(np.int64)
        archs = self._choices[np.arange(L), picks]
        if self.uniform_depth:
            depth_layers = np.flatnonzero(self._has_identity & (np.arange(L) != layer))
            if len(depth_layers):
                k = rng.integers(0, len(depth_layers) + 1, size=n)
                order = np.argsort(rng.random((n, len(depth_layers))), axis=1)  # a random permutation per row
                chosen = np.zeros((n, len(depth_layers)), dtype=bool)
                np.put_along_axis(chosen, order, np.arange(len(depth_layers)) < k[:, None], axis=1)
                block = archs[:, depth_layers]
                block[chosen] = IDENTITY
                archs[:, depth_layers] = block
        archs[:, layer] = op
        return archs

    def sample_containing(self, layer: int, op: int, n: int, max_attempts: int | None = None) -> np.ndarray:
        """Up to ``n`` new legal children with ``op`` in ``layer`` (fewer if ``n * 100`` draws do not find them)."""
        max_attempts = max_attempts if max_attempts is not None else n * 100
        found: list[np.ndarray] = []
        attempts = 0
        while len(found) < n and attempts < max_attempts:
            chunk = min(max(2 * (n - len(found)), 64), max_attempts - attempts)
            archs = self._draw(layer, op, chunk)
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
    lo = flops.pre + flops.post + sum(min(0 if op == IDENTITY else flops.layers[i][op] for op in layer)
                                      for i, layer in enumerate(ops))
    hi = flops.pre + flops.post + sum(max(0 if op == IDENTITY else flops.layers[i][op] for op in layer)
                                      for i, layer in enumerate(ops))
    if lo > max_flops or hi < min_flops:
        raise UserError(f"no architecture of this space meets the FLOPs limits [{min_flops / 1e6:.1f}M, "
                        f"{max_flops / 1e6:.1f}M]: its architectures range from {lo / 1e6:.1f}M to {hi / 1e6:.1f}M "
                        f"(limits are in the paper's 224x224 units); widen --min_flops / --max_flops")
