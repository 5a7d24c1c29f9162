"""Ranking metrics and the scores they rank: Kendall tau-b, Spearman rho, random scores, supernet accuracy.

Kendall tau here is tau-b (ties counted as ties, as :func:`scipy.stats.kendalltau`); the original ranked by
sorting, which breaks ties by position (spec §11). It is an exact O(n^2) pair count done in chunks on the
scores' device: 15,625 architectures take well under a second on a GPU.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


def kendall_tau(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, chunk: int = 1024) -> float:
    """Kendall's tau-b of two score vectors (nan if either is constant)."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float64) if not torch.is_tensor(x) else x, dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y, dtype=np.float64) if not torch.is_tensor(y) else y, dtype=torch.float64,
                        device=x.device)
    if x.shape != y.shape or x.dim() != 1:
        raise ValueError(f"kendall_tau needs two vectors of one length, got {tuple(x.shape)} and {tuple(y.shape)}")
    s = tx = ty = 0.0
    for start in range(0, len(x), chunk):
        dx = torch.sign(x[start:start + chunk, None] - x[None, :])
        dy = torch.sign(y[start:start + chunk, None] - y[None, :])
        s += float((dx * dy).sum())
        tx += float(dx.abs().sum())
        ty += float(dy.abs().sum())
    return s / np.sqrt(tx * ty) if tx and ty else float("nan")


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their mean rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def spearman_rho(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of average ranks."""
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / denom) if denom else float("nan")


def random_scores(n: int, seed: int) -> np.ndarray:
    """The random baseline: i.i.d. uniform scores."""
    return np.random.default_rng([seed, 20201]).random(n)


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def recalibrated_bn(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[Batch]):
    """BN recalibration (ReBN, spec §2.5): inside the block the BN running statistics are the exact averages of
    ``forward`` in train mode over ``batches``; the supernet's own statistics come back on exit."""
    bns = _batchnorms(model)
    saved = [(bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone(), bn.momentum)
             for bn in bns]
    was_training = model.training
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the recalibration batches
        model.train()
        with torch.no_grad():
            for x, _ in batches:
                forward(x)
        model.eval()
        yield
    finally:
        for bn, (mean, var, count, momentum) in zip(bns, saved):
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.num_batches_tracked.copy_(count)
            bn.momentum = momentum
        model.train(was_training)


@torch.no_grad()
def top1(forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[Batch]) -> float:
    """Top-1 accuracy (%) of ``forward`` over ``batches``."""
    correct = n = 0
    for x, y in batches:
        correct += int((forward(x).argmax(1) == y).sum())
        n += len(y)
    return 100.0 * correct / max(n, 1)


def supernet_accuracy(model: nn.Module, path, val: Callable[[], Iterable[Batch]],
                      rebn: Callable[[], Iterable[Batch]] | None = None) -> float:
    """Top-1 of the child ``path`` inheriting the supernet's weights, in eval mode; with ``rebn`` its BN
    statistics are first recalibrated on those batches (``val`` / ``rebn`` return fresh iterables)."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x, path)

    if rebn is None:
        was_training = model.training
        model.eval()
        try:
            return top1(forward, val())
        finally:
            model.train(was_training)
    with recalibrated_bn(model, forward, rebn()):
        return top1(forward, val())
