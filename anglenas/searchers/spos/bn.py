"""Exact BN recalibration of one path of a weight-sharing supernet.

The supernet's running statistics belong to no single path, so before a candidate is evaluated every BN layer
is reset and its statistics are recomputed on a fixed set of training images, in ``train()`` mode under
``no_grad``. With ``momentum=None`` PyTorch keeps a cumulative average: after ``B`` equally sized batches
``running_mean`` is the mean of the ``B`` batch means (the exact mean over the set) and ``running_var`` the mean
of the ``B`` unbiased batch variances. The original (``utils`` ``recalculate_bn``) kept momentum 0.1, an exponential
average in which the last few batches dominate and the first of its 313 batches counts for ~1e-14.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from anglenas.data import Batch


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, arch: Sequence[int], batches: Iterable[Batch]) -> int:
    """Replace every BN's running statistics by the exact average over ``batches`` on the path ``arch``.

    The batches should all have the same size (then the mean is exact over the images). Leaves the model in
    ``eval()`` mode with the layers' momenta unchanged; returns the number of images seen.
    """
    layers = batchnorms(model)
    momenta = [bn.momentum for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    seen = 0
    try:
        for x, _ in batches:
            model(x, arch)
            seen += len(x)
    finally:
        for bn, momentum in zip(layers, momenta):
            bn.momentum = momentum
        model.eval()
    return seen
