"""Experiment 5: SPOS evolutionary search on the NB201 supernet, in the full space and in the space
ABS shrinks it to (the operators the angle keeps in experiment 4), judged by the found cell's ground truth.

Candidates are scored in this process by supernet accuracy on the valid images after BN recalibration; the
search is :class:`anglenas.searchers.spos.evolution.EvolutionSearch` with its JSON state saved after every generation.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from anglenas.checkpoint import atomic_write_text
from anglenas.log import RunLogger
from anglenas.searchers.spos.evolution import Arch, EvolutionConfig, EvolutionSearch


class FunctionEvaluator:
    """The search's ``Evaluator`` protocol over a plain ``score(arch) -> top1`` run in this process."""

    def __init__(self, score: Callable[[Arch], float], on_done: Callable[[], None] | None = None) -> None:
        self.score, self.on_done = score, on_done

    def evaluate(self, archs: Sequence[Arch], on_result: Callable[[Arch, float], None]) -> None:
        for arch in archs:
            on_result(tuple(int(a) for a in arch), self.score(arch))
            if self.on_done is not None:
                self.on_done()


def evolve(ops: list[list[int]], cfg: EvolutionConfig, seed: int, score: Callable[[Arch], float],
           state_path: Path, logger: RunLogger) -> dict[Arch, float]:
    """All results of an evolutionary search over ``ops`` (exhaustive when the space holds no more than one
    population); resumes from ``state_path`` (state and results, rewritten after every generation)."""
    size = int(np.prod([len(o) for o in ops]))
    if size <= cfg.population_num:  # nothing to evolve: evaluate the whole space
        cfg = EvolutionConfig(**{**cfg.__dict__, "max_epochs": 1})
    state, results = None, {}
    if state_path.is_file():
        saved = json.loads(state_path.read_text())
        if saved["ops"] == ops:
            state, results = saved["state"], {tuple(a): acc for a, acc in saved["results"]}
    search = EvolutionSearch(ops, cfg, seed, state=state, results=results)
    while not search.done:
        search.step(FunctionEvaluator(score))
        h = search.history[-1]
        logger.info(f"generation {h['epoch']}: {h['evaluated']} candidates, best {h['best']:.2f}, "
                    f"best so far {h['top1_so_far']:.2f} ({len(search.results)} of {size} evaluated)")
        atomic_write_text(state_path, json.dumps({"ops": ops, "state": search.state(),
                                                  "results": [[list(a), acc] for a, acc in search.results.items()]}))
    return search.results
