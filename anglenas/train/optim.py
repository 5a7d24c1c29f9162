"""SGD with the original's two parameter groups and the linear learning-rate schedule with a floor (the original's
``get_optimizer_schedule``)."""
from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float, decay_linear: bool = True) -> list[dict]:
    """Weight decay on conv weights (4-D) and, with ``decay_linear``, the Linear layers' weights and biases; none on
    BN parameters. (The supernet trainers decay the classifier as the original did; its training from scratch
    did not: its filter named ``classifier.0`` while the Linear was ``classifier.1``.)"""
    decay, no_decay = [], []
    classifier = ({id(p) for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()}
                  if decay_linear else set())
    for p in model.parameters():
        (decay if p.ndim == 4 or id(p) in classifier else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def sgd(model: nn.Module, lr: float, momentum: float, weight_decay: float, nesterov: bool = False,
        decay_linear: bool = True) -> torch.optim.SGD:
    """SGD over :func:`param_groups`. Parameters whose ``.grad`` is None (unsampled ops) are left untouched:
    no momentum and no weight decay reach them."""
    return torch.optim.SGD(param_groups(model, weight_decay, decay_linear), lr=lr, momentum=momentum,
                           nesterov=nesterov)


def linear_lr(step: int, lr: float, total_steps: int, min_lr: float = 0.0) -> float:
    """Linear decay from ``lr`` that reaches ``min_lr`` at ``total_steps`` and stays there.

    Equals the original's ``1 - step / Delta`` with ``Delta = total / (1 - min_lr / lr)``, frozen at the floor.
    """
    return max(lr - (lr - min_lr) * step / total_steps, min_lr)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
