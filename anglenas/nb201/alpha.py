"""The original's "magnitude" metric of the operator-dropping experiment (spec §11, ``dropnode_by_magnitude.py``):
DARTS architecture weights alpha [6 edges, 5 ops] learned next to an SPOS supernet on the NB201 space.

The weights train on a fully random single path (``dync_genotype(True)``: one cell, uniform over all 5 ops on
every edge, shared by every search cell); before each weight step alpha takes one first-order DARTS step: the
supernet runs in ``joint`` mode (every edge the softmax(alpha)-weighted sum of all its ops) on the validation
batch, and Adam (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3) updates alpha only. An operator's score is
softmax(alpha)[edge, op].

Wiring (``SupernetTrainer`` runs ``arch_step`` before every weight step)::

    alphas = AlphaStep(model)
    trainer = SupernetTrainer(model, RandomCellSampler(len(model.search_cells), seed), stream, cfg, steps,
                              device, arch_step=alphas, arch_stream=valid_stream)
    scores = alphas.operator_scores()   # {(edge, op): softmax(alpha)[edge, op]} for drop_report
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from anglenas.spaces.nb201.cells import EDGES, NONE, NUM_EDGES, OPS, Cell
from anglenas.spaces.nb201.supernet import NB201SuperNet, SearchCell


def joint_cell(cell: SearchCell, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A search cell in ``joint`` mode: node i = sum over j < i and ops of weights[i<-j, op] * op(node j)
    (``none`` contributes zero)."""
    nodes = [x]
    for node in range(1, 4):
        terms = [weights[e, op] * cell.edges[e][op](nodes[j])
                 for e, (i, j) in enumerate(EDGES) if i == node for op in range(len(OPS)) if op != NONE]
        nodes.append(sum(terms[1:], terms[0]))
    return nodes[3]


def joint_forward(model: NB201SuperNet, x: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Logits of the supernet with every search cell in ``joint`` mode under softmax(``alphas`` [6, 5])."""
    weights = torch.softmax(alphas, dim=-1)
    x = model.stem(x)
    for layer in model.layers:
        x = joint_cell(layer, x, weights) if isinstance(layer, SearchCell) else layer(x)
    return model.classifier(model.pool(model.lastact(x)).flatten(1))


class AlphaStep:
    """The architecture weights and their first-order DARTS step; call it as ``SupernetTrainer``'s ``arch_step``."""

    def __init__(self, model: NB201SuperNet, lr: float = 3e-4, betas: tuple[float, float] = (0.5, 0.999),
                 weight_decay: float = 1e-3) -> None:
        self.model = model
        device = next(model.parameters()).device
        self.alphas = nn.Parameter(torch.zeros(NUM_EDGES, len(OPS), device=device))
        self.optimizer = torch.optim.Adam([self.alphas], lr=lr, betas=betas, weight_decay=weight_decay)

    def __call__(self, step: int, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                 y_val: torch.Tensor) -> float:
        """One Adam step of alpha on the validation batch; the supernet weights get no gradient."""
        self.model.train()
        loss = nn.functional.cross_entropy(joint_forward(self.model, x_val, self.alphas), y_val)
        (grad,) = torch.autograd.grad(loss, [self.alphas])
        self.optimizer.zero_grad(set_to_none=True)
        self.alphas.grad = grad
        self.optimizer.step()
        return float(loss.detach())

    def operator_scores(self) -> dict[tuple[int, int], float]:
        """softmax(alpha)[edge, op] of every operator (edge, op)."""
        probs = torch.softmax(self.alphas.detach().double().cpu(), dim=-1).numpy()
        return {(e, op): float(probs[e, op]) for e in range(NUM_EDGES) for op in range(len(OPS))}

    def state_dict(self) -> dict:
        return {"alphas": self.alphas.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.alphas.copy_(state["alphas"])
        self.optimizer.load_state_dict(state["optimizer"])


class RandomCellSampler:
    """The original's ``dync_genotype(True)``: one cell per step, each edge uniform over all 5 ops (``none``
    included, no redraw), shared by every search cell; a function of (seed, step)."""

    def __init__(self, num_cells: int, seed: int) -> None:
        self.num_cells, self.seed = num_cells, seed

    def cell(self, step: int) -> Cell:
        rng = np.random.default_rng([self.seed, step, 7])
        return tuple(int(op) for op in rng.integers(len(OPS), size=NUM_EDGES))

    def paths(self, step: int) -> list[Cell]:
        return [self.cell(step)]


__all__ = ["AlphaStep", "RandomCellSampler", "joint_cell", "joint_forward"]
