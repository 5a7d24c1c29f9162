"""The NB201 supernet optimiser semantics (fidelity fix 4).

The original's NB201 trainer (AutoDL's SPOS search loop) zeroes gradients instead of dropping them, so every
parameter is stepped every step: SGD with Nesterov momentum and weight decay on *every* parameter, BN included.
An op left out of this step's path still moves by its momentum and decays. ``sampled_only`` is this package's
supernet trainer as it is (:mod:`anglenas.train.supernet`): only the sampled path's parameters move, decay only
on conv and classifier weights, no Nesterov.
"""
from __future__ import annotations

import torch
from torch import nn

SEMANTICS = ("original", "sampled_only")


def update_every_parameter(model: nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """The original's optimiser over ``model``: one group, decay on everything, Nesterov when momentum > 0; before
    each step a parameter without a gradient (not on this step's path) gets a zero one, so momentum and weight
    decay reach it as in the original."""
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)

    def zero_fill_missing_grads(opt: torch.optim.Optimizer, args, kwargs) -> None:
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)

    optimizer.register_step_pre_hook(zero_fill_missing_grads)
    return optimizer
