"""Path samplers for supernet training; a step's path(s) are a function of (seed, step) alone, so every rank
samples the same path without communication and a resumed run samples what an uninterrupted one would."""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from anglenas.errors import UserError


class PathSampler(Protocol):
    """Training-path sampler: the path(s) of a step are a function of (seed, step) only."""

    def paths(self, step: int) -> list[Any]: ...


class UniformPathSampler:
    """Single-path uniform sampling: each layer picks uniformly from its op list (identity included)."""

    def __init__(self, ops: list[list[int]], seed: int) -> None:
        self.ops, self.seed = [list(layer) for layer in ops], seed

    def paths(self, step: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, step])
        return [[layer[rng.integers(len(layer))] for layer in self.ops]]


class FairPathSampler:
    """FairNAS strict fairness: m paths per step in which every op of every layer appears exactly once.

    Needs the same number of ops m in every layer (ABS's per-layer drop rule guarantees it). ``uneven`` lifts that:
    m is the largest count, and a layer with k < m ops fills its m slots with every op ``m // k`` times and a
    random ``m % k`` of them once more (so with equal counts it is strict fairness).
    """

    def __init__(self, ops: list[list[int]], seed: int, uneven: bool = False) -> None:
        counts = sorted({len(layer) for layer in ops})
        if len(counts) != 1 and not uneven:
            raise UserError(f"strict fairness needs the same number of ops in every layer; this space has "
                            f"{counts} ops per layer (shrink it with the per-layer drop rule, as FairNAS does)")
        self.ops, self.seed, self.m = [list(layer) for layer in ops], seed, counts[-1]

    def paths(self, step: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, step])
        columns = []
        for layer in self.ops:
            slots = layer * (self.m // len(layer))
            if self.m % len(layer):
                slots += [layer[i] for i in rng.permutation(len(layer))[:self.m % len(layer)]]
            columns.append([slots[i] for i in rng.permutation(self.m)])
        return [list(path) for path in zip(*columns)]
