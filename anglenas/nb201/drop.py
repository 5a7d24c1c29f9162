"""Experiment 4 (the paper's Fig. 7, the original's ``dropnode_by_*.py``): drop 20 of the 30 NB201 operators in one
round by angle, supernet accuracy, magnitude or weight norm, and check what survives against the ground truth.

An operator is an (edge, op) pair. Its "magnitude" score is the original's: softmax(alpha)[edge, op] of a DARTS
search next to the supernet (:mod:`anglenas.nb201.alpha`). The other scores are the mean of a metric over the
architectures that contain it (all 15,625 for angle and ``weight_norm``, the weight magnitude of the angle's
supernet; the ``--acc_archs`` sample for accuracy, without ReBN as the original).
Its ground-truth score is the summed test accuracy of the architectures that contain it (the original's
``dropnode_by_*.py``); ranks 1..30 follow from that. The drop rule is ABS's global rule
(:func:`anglenas.abs.scoring.drop_global`): the lowest-scored operators go first, but every edge keeps at least one.
"""
from __future__ import annotations

import numpy as np

from anglenas.abs.scoring import apply_drops, drop_global
from anglenas.spaces.nb201.cells import NUM_EDGES, OPS, Cell

Operator = tuple[int, int]
FULL_OPS = [list(range(len(OPS))) for _ in range(NUM_EDGES)]
DROP_METRICS = ("angle", "acc_no_rebn", "magnitude", "weight_norm")


def operator_scores(values: np.ndarray, cells: np.ndarray, reduce=np.mean) -> dict[Operator, float]:
    """Score of each (edge, op): ``reduce`` of ``values`` over the ``cells`` [N, 6] containing it (0 if none)."""
    out = {}
    for edge in range(NUM_EDGES):
        for op in range(len(OPS)):
            mask = cells[:, edge] == op
            out[(edge, op)] = float(reduce(values[mask])) if mask.any() else 0.0
    return out


def ground_truth_ranks(accuracy: np.ndarray, cells: np.ndarray) -> dict[Operator, int]:
    """Rank 1..30 of each operator by the summed accuracy of the architectures containing it."""
    scores = operator_scores(accuracy, cells, reduce=np.sum)
    return {o: r for r, o in enumerate(sorted(scores, key=lambda o: -scores[o]), start=1)}


def drop_report(scores: dict[Operator, float], gt_ranks: dict[Operator, int], best_cells: list[Cell],
                num_drops: int = 20) -> dict:
    """Drop ``num_drops`` operators by ``scores``; report the survivors against the ground truth."""
    dropped = drop_global(FULL_OPS, scores, num_drops)
    kept = apply_drops(FULL_OPS, dropped)
    kept_ranks = sorted(gt_ranks[(e, op)] for e, ops in enumerate(kept) for op in ops)
    return {"dropped": [list(o) for o in dropped], "kept": kept, "kept_gt_ranks": kept_ranks,
            "top10_kept": sum(r <= 10 for r in kept_ranks),
            "best_survives": any(all(c[e] in kept[e] for e in range(NUM_EDGES)) for c in best_cells),
            "space_size": int(np.prod([len(k) for k in kept]))}
