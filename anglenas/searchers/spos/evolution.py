"""Evolutionary architecture search of SPOS (the original's ``search.py::EvolutionTrainer``), independent of how
candidates are evaluated.

Each generation: evaluate the population, merge it into the top-``select_num`` and top-``population_num`` lists,
breed up to ``crossover_num`` children by uniform crossover of two top parents, up to
``population_num - |crossover|`` by mutation (each gene redrawn with probability ``m_prob``), and top the
population up with random children. A child is legal when it was never put in a population before and its FLOPs
lie within the limits, so no architecture is evaluated twice.

The search state (generation, population, top lists, RNG state) is a JSON-able dict saved after every
generation; results arrive one by one through ``on_result`` so a caller can persist them as they come. A search
resumed from its last state and the results it had evaluates only what is missing and then continues exactly
as an uninterrupted run would.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from anglenas.config import field
from anglenas.errors import UserError

Arch = tuple[int, ...]
RETRIES = 10000
"""Draws allowed per wanted child in crossover, mutation and the random fill (the original's budget)."""
BATCH = 512
"""Children drawn at once."""


class Evaluator(Protocol):
    """Evaluates architectures; calls ``on_result(arch, top1)`` for each and returns when all are done."""

    def evaluate(self, archs: Sequence[Arch], on_result: Callable[[Arch, float], None]) -> None: ...


@dataclass
class EvolutionConfig:
    """Evolutionary search hyper-parameters (SPOS defaults)."""

    population_num: int = field(50, "population size", low=1)
    select_num: int = field(10, "top-k parents kept for breeding", low=1)
    crossover_num: int = field(25, "children by crossover per generation (at most)", low=0)
    mutation_num: int | None = field(None, "children by mutation per generation (default: population - crossover, "
                                           "as the original; a number caps it)", low=0)
    m_prob: float = field(0.5, "per-layer mutation probability", low=0, high=1)
    max_epochs: int = field(20, "generations", low=1)
    topk: int = field(2, "architectures reported at the end", low=1)


class EvolutionSearch:
    """The search over ``ops`` (per-layer op lists); ``legal(arch)`` adds constraints such as FLOPs limits."""

    def __init__(self, ops: list[list[int]], cfg: EvolutionConfig, seed: int,
                 legal: Callable[[Arch], bool] = lambda arch: True, state: dict | None = None,
                 results: dict[Arch, float] | None = None) -> None:
        self.ops, self.cfg, self.legal = [list(layer) for layer in ops], cfg, legal
        self.results: dict[Arch, float] = dict(results or {})
        self.rng = np.random.default_rng(seed)
        self._counts = np.array([len(site) for site in self.ops])
        width = int(self._counts.max())
        self._table = np.array([site + [site[0]] * (width - len(site)) for site in self.ops], dtype=np.int64)
        if state is None:
            self.epoch, self.visited = 0, set()
            self.top: list[Arch] = []  # top population_num by accuracy, best first
            self.history: list[dict] = []
            self.population = self._fill([])
        else:
            self.epoch = state["epoch"]
            self.population = [tuple(a) for a in state["population"]]
            self.visited = {tuple(a) for a in state["visited"]}
            self.top = [tuple(a) for a in state["top"]]
            self.history = state["history"]
            self.rng.bit_generator.state = state["rng"]

    # -- state --------------------------------------------------------------------------------------------------
    def state(self) -> dict:
        """JSON-able state at the start of generation ``epoch`` (its population not yet evaluated)."""
        return {"epoch": self.epoch, "population": [list(a) for a in self.population],
                "visited": [list(a) for a in sorted(self.visited)], "top": [list(a) for a in self.top],
                "history": self.history, "rng": self.rng.bit_generator.state}

    @property
    def done(self) -> bool:
        """After ``max_epochs`` generations, or once no legal architecture is left to breed (a small space, e.g.
        one ABS shrank, is then searched exhaustively)."""
        return self.epoch >= self.cfg.max_epochs or (not self.population and bool(self.results))

    # -- breeding -----------------------------------------------------------------------------------------------
    def _accept(self, arch: Arch, into: list[Arch]) -> bool:
        if arch in self.visited or not self.legal(arch):
            return False
        self.visited.add(arch)
        into.append(arch)
        return True

    def _uniform(self, n: int) -> np.ndarray:
        """``n`` architectures [n, sites], each site uniform over its op list."""
        picks = (self.rng.random((n, len(self.ops))) * self._counts).astype(np.int64)
        return self._table[np.arange(len(self.ops)), picks]

    def _breed(self, draw: Callable[[int], np.ndarray], limit: int, into: list[Arch] | None = None) -> list[Arch]:
        """Legal new children from ``draw(n)`` batches appended to ``into`` until it holds ``limit`` or
        ``limit * RETRIES`` draws are spent (the original's budget; drawn in batches, so a spent space costs
        little time)."""
        children: list[Arch] = [] if into is None else into
        budget = limit * RETRIES
        while len(children) < limit and budget > 0:
            batch = draw(min(budget, BATCH))
            budget -= len(batch)
            for row in batch.tolist():
                if self._accept(tuple(row), children) and len(children) >= limit:
                    break
        return children

    def _fill(self, population: list[Arch]) -> list[Arch]:
        """Top ``population`` up to ``population_num`` with random legal children."""
        return self._breed(self._uniform, self.cfg.population_num, population)

    def _crossover(self, parents: list[Arch]) -> list[Arch]:
        """Each gene from one of two parents drawn from the top ``select_num`` (possibly the same one twice)."""
        pool = np.array(parents, dtype=np.int64)

        def draw(n: int) -> np.ndarray:
            pairs = self.rng.integers(len(parents), size=(n, 2))
            mask = self.rng.random((n, len(self.ops))) < 0.5
            return np.where(mask, pool[pairs[:, 0]], pool[pairs[:, 1]])

        return self._breed(draw, self.cfg.crossover_num)

    def _mutation(self, parents: list[Arch], limit: int) -> list[Arch]:
        """Each gene of a parent redrawn uniformly from its op list with probability ``m_prob``."""
        pool = np.array(parents, dtype=np.int64)

        def draw(n: int) -> np.ndarray:
            chosen = pool[self.rng.integers(len(parents), size=n)]
            redraw = self.rng.random((n, len(self.ops))) < self.cfg.m_prob
            return np.where(redraw, self._uniform(n), chosen)

        return self._breed(draw, limit)

    # -- the loop -----------------------------------------------------------------------------------------------
    def step(self, evaluator: Evaluator, on_result: Callable[[Arch, float], None] | None = None) -> None:
        """Evaluate the current generation (only what has no result yet) and breed the next one."""
        if not self.population:
            raise UserError("no legal candidate to evaluate: the FLOPs limits exclude every architecture of this "
                            "space; widen --min_flops / --max_flops")
        missing = [a for a in self.population if a not in self.results]

        def record(arch: Arch, acc: float) -> None:
            arch = tuple(int(x) for x in arch)
            if arch not in self.results:  # a duplicate result is ignored
                self.results[arch] = float(acc)
                if on_result is not None:
                    on_result(arch, float(acc))

        if missing:
            evaluator.evaluate(missing, record)
        lost = [a for a in self.population if a not in self.results]
        if lost:
            raise RuntimeError(f"the evaluator returned without results for {len(lost)} candidates")
        pool = set(self.top) | set(self.population)
        self.top = sorted(pool, key=lambda a: (-self.results[a], a))[: self.cfg.population_num]
        accs = [self.results[a] for a in self.population]
        self.history.append({"epoch": self.epoch, "evaluated": len(self.population),
                             "best": max(accs), "mean": float(np.mean(accs)), "top1_so_far": self.results[self.top[0]],
                             "accs": accs})
        parents = self.top[: self.cfg.select_num]
        crossover = self._crossover(parents)
        limit = self.cfg.population_num - len(crossover)
        cap = self.cfg.mutation_num
        mutation = self._mutation(parents, limit if cap is None else min(cap, limit))
        self.population = self._fill(mutation + crossover)
        self.history[-1].update(crossover=len(crossover), mutation=len(mutation),
                                random=len(self.population) - len(crossover) - len(mutation))
        self.epoch += 1

    def best(self, k: int | None = None) -> list[tuple[Arch, float]]:
        """The ``k`` (default ``topk``) best architectures found, with their accuracy."""
        return [(a, self.results[a]) for a in self.top[: k or self.cfg.topk]]
