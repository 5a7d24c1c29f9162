"""Speed levers of the supernet step that do not change what is learned (measured by bench/bench_supernet.py).

Fused SGD: one kernel steps every sampled parameter. It needs a momentum buffer for each parameter it steps, so
every buffer starts at zero; with dampening 0 the first step then gives ``buf = 0 * m + g = g``, exactly plain
SGD's first step. A parameter whose grad is None (an op off the step's path) is still skipped: no momentum, no
weight decay.
"""
from __future__ import annotations

import torch


def fill_momentum_buffers(optimizer: torch.optim.SGD) -> None:
    """Give every parameter without one a zero momentum buffer (also after loading an older optimiser state)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state[p]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def fused_sgd(optimizer: torch.optim.SGD) -> torch.optim.SGD:
    """The same SGD (groups, LR, momentum, Nesterov, weight decay per group) as one fused kernel per step."""
    d = optimizer.defaults
    if d.get("dampening", 0) != 0:
        raise ValueError("fused SGD with zero-started buffers equals plain SGD only with dampening 0")
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in optimizer.param_groups]
    fused = torch.optim.SGD(groups, lr=d["lr"], momentum=d["momentum"], nesterov=d["nesterov"], fused=True)
    fill_momentum_buffers(fused)
    return fused
