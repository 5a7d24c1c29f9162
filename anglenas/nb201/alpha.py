"""The original's "magnitude" metric of the operator-dropping experiment (``dropnode_by_magnitude.py``):
DARTS architecture weights alpha [6 edges, 5 ops] learned next to a weight-sharing supernet on the NB201 space.

The network is the space's relaxed supernet (NB201's DARTS network, :mod:`anglenas.spaces.nb201.relaxed`). Its
weights train on a fully random single path (``dync_genotype(True)``: one cell, uniform over all 5 ops on every
edge, shared by every search cell; :class:`~anglenas.spaces.relaxed.PathMixing`); before each weight step alpha
takes one first-order DARTS step: every edge is the softmax(alpha)-weighted sum of its ops
(:class:`~anglenas.spaces.relaxed.SoftmaxMixing`) on the validation batch, and Adam (lr 3e-4, betas (0.5, 0.999),
weight decay 1e-3) updates alpha only, from alpha = 0. An operator's score is softmax(alpha)[edge, op].

Wiring (``SupernetTrainer`` runs ``arch_step`` before every weight step)::

    net = space.relaxed_supernet(space.initial_operations())
    alphas = AlphaStep(net)
    trainer = SupernetTrainer(SinglePathView(net), RandomCellSampler(seed), stream, cfg, steps, device,
                              arch_step=alphas, arch_stream=valid_stream)
    scores = alphas.operator_scores()   # {(edge, op): softmax(alpha)[edge, op]} for drop_report
"""
from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from anglenas.spaces.nb201.cells import NUM_EDGES, OPS, Cell
from anglenas.spaces.nb201.relaxed import NB201RelaxedSupernet
from anglenas.spaces.nb201.supernet import accept_legacy_keys
from anglenas.spaces.relaxed import PathMixing, SoftmaxMixing

_SPOS_EDGE = re.compile(r"^(layers\.\d+\.edges\.\d+)\.(\d+)\.")


class SinglePathView(nn.Module):
    """The weights of a relaxed supernet as :class:`~anglenas.train.supernet.SupernetTrainer` trains them:
    ``forward(x, cell)`` runs the single path ``cell`` (one cell for every search cell). Its parameters are the
    network weights only (alpha has its own optimiser, :class:`AlphaStep`), named as in the supernet; checkpoints
    of the earlier SPOS-supernet version (``layers.I.edges.E.OP.…``) load too."""

    def __init__(self, net: NB201RelaxedSupernet) -> None:
        super().__init__()
        self.__dict__["net"] = net  # not a submodule: its alphas stay out of this module's parameters
        for name, child in net.named_children():
            self.add_module(name, child)
        accept_legacy_keys(self)
        self._register_load_state_dict_pre_hook(self._upgrade_spos_keys)

    @staticmethod
    def _upgrade_spos_keys(state_dict, prefix, *_) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            new = prefix + _SPOS_EDGE.sub(r"\1.candidates.\2.", key[len(prefix):])
            if new != key:
                state_dict[new] = state_dict.pop(key)

    def forward(self, x: torch.Tensor, cell: Cell) -> torch.Tensor:
        self.net.set_mixing(PathMixing.of_ops(self.net, [cell]))
        return self.net(x)


class AlphaStep:
    """The first-order DARTS step of alpha; call it as ``SupernetTrainer``'s ``arch_step``."""

    def __init__(self, net: NB201RelaxedSupernet, lr: float = 3e-4, betas: tuple[float, float] = (0.5, 0.999),
                 weight_decay: float = 1e-3) -> None:
        self.net = net
        with torch.no_grad():
            net.alphas.zero_()  # the experiment starts from uniform weights
        self.optimizer = torch.optim.Adam(net.arch_parameters(), lr=lr, betas=betas, weight_decay=weight_decay)

    def __call__(self, step: int, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                 y_val: torch.Tensor) -> float:
        """One Adam step of alpha on the validation batch; the network weights get no gradient."""
        self.net.train()
        self.net.set_mixing(SoftmaxMixing())
        loss = nn.functional.cross_entropy(self.net(x_val), y_val)
        (grad,) = torch.autograd.grad(loss, [self.net.alphas])
        self.optimizer.zero_grad(set_to_none=True)
        self.net.alphas.grad = grad
        self.optimizer.step()
        self.net.alphas.grad = None
        return float(loss.detach())

    def operator_scores(self) -> dict[tuple[int, int], float]:
        """softmax(alpha)[edge, op] of every operator (edge, op)."""
        (probs,) = self.net.probabilities()
        return {(e, op): float(p[k]) for e, (site, p) in enumerate(zip(self.net.site_ops[0], probs))
                for k, op in enumerate(site)}

    def state_dict(self) -> dict:
        return {"alphas": self.net.alphas.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.net.alphas.copy_(state["alphas"])
        self.optimizer.load_state_dict(state["optimizer"])


class RandomCellSampler:
    """The original's ``dync_genotype(True)``: one cell per step, each edge uniform over all 5 ops (``none``
    included, no redraw), shared by every search cell; a function of (seed, step)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def cell(self, step: int) -> Cell:
        rng = np.random.default_rng([self.seed, step, 7])
        return tuple(int(op) for op in rng.integers(len(OPS), size=NUM_EDGES))

    def paths(self, step: int) -> list[Cell]:
        return [self.cell(step)]


__all__ = ["AlphaStep", "RandomCellSampler", "SinglePathView"]
