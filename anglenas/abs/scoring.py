"""One ABS round: score every operator by the mean angle of children containing it, then drop (the original's ``ABS``,
``drop_operators``).

An operator is a (layer, op) pair; only layers with more than one op left are scored. For each operator in
layer order, new children containing it are sampled until ``sample_num`` of the round's children contain it
(children drawn for one operator count for every operator they contain). Its score is the mean angle of the
first ``sample_num`` such children; an operator with none scores 0 and is first in line to be dropped.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from anglenas.abs.candidates import CandidateSampler

Operator = tuple[int, int]


def score_operators(ops: list[list[int]], sampler: CandidateSampler, angles: Callable[[np.ndarray], torch.Tensor],
                    sample_num: int) -> tuple[dict[Operator, float], np.ndarray]:
    """Scores of all scored operators and the round's children [N, layers]."""
    operators = [(layer, op) for layer, layer_ops in enumerate(ops) if len(layer_ops) > 1 for op in layer_ops]
    num_ops = len(sampler.space.op_names)
    counts = np.zeros((len(ops), num_ops), dtype=np.int64)  # children containing (layer, op), negative ids wrap
    chunks: list[np.ndarray] = []
    rows = np.arange(len(ops))
    for layer, op in operators:
        need = sample_num - counts[layer, op % num_ops]
        if need <= 0:
            continue
        new = sampler.sample_containing(layer, op, int(need))
        if len(new):
            chunks.append(new)
            np.add.at(counts, (np.broadcast_to(rows, new.shape), new % num_ops), 1)
    children = np.concatenate(chunks) if chunks else np.zeros((0, len(ops)), dtype=np.int64)
    theta = angles(children).cpu().numpy() if len(children) else np.zeros(0)
    scores = {}
    for layer, op in operators:
        idx = np.flatnonzero(children[:, layer] == op)[:sample_num]
        scores[(layer, op)] = float(theta[idx].mean()) if len(idx) else 0.0
    return scores, children


def drop_global(ops: list[list[int]], scores: dict[Operator, float], num_drops: int) -> list[Operator]:
    """SPOS rule: walk operators by ascending score; drop one if a higher-scored operator of its layer remains
    later in that order (so each layer keeps its best op); stop after ``num_drops``."""
    ranked = sorted(scores, key=lambda o: scores[o])  # stable: ties keep layer / list order
    dropped: list[Operator] = []
    for i, (layer, op) in enumerate(ranked):
        if len(dropped) == num_drops:
            break
        if any(other_layer == layer for other_layer, _ in ranked[i + 1:]):
            dropped.append((layer, op))
    return dropped


def drop_per_layer(ops: list[list[int]], scores: dict[Operator, float]) -> list[Operator]:
    """FairNAS / DARTS rule: the lowest-scored op of every layer that has more than one."""
    dropped = []
    for layer, layer_ops in enumerate(ops):
        if len(layer_ops) > 1:
            dropped.append((layer, min(layer_ops, key=lambda op: scores[(layer, op)])))
    return dropped


def apply_drops(ops: list[list[int]], dropped: list[Operator]) -> list[list[int]]:
    """``ops`` without the dropped operators (the others keep their order)."""
    gone = set(dropped)
    return [[op for op in layer_ops if (layer, op) not in gone] for layer, layer_ops in enumerate(ops)]
