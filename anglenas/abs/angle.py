"""The angle metric of a child network, computed by block decomposition (spec §3.4, Algorithm 1).

The weight vector V(W, a) of child ``a`` concatenates the weights every path shares (stem, fixed first block,
head, classifier) and the conv weights of the block ``a`` picks in each layer (nothing for identity). Its angle is

    theta(a) = arccos( <V(W0, a), V(W, a)> / (|V(W0, a)| |V(W, a)|) ).

The vectors are never built: each block contributes three numbers, <w0, w>, |w0|^2 and |w|^2, and a child's
inner product and squared norms are sums of its blocks' numbers. Scoring N children is then a gather over a
[layers, ops, 3] table, milliseconds even for millions of candidates.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from anglenas.nn.supernet import MobileSuperNet
from anglenas.spaces import BLOCK_KEYS, IDENTITY


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's parameters (the base weights W0 of the angle)."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


class BlockStats:
    """``stats(weights)``: [<w0, w>, |w0|^2, |w|^2] summed over parameters ``weights`` of ``model`` and their base
    weights W0, in float64 on the model's device."""

    def __init__(self, model: torch.nn.Module, base: Mapping[str, torch.Tensor]) -> None:
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.base, self.device = base, next(model.parameters()).device

    def __call__(self, weights: list[torch.Tensor]) -> torch.Tensor:
        out = torch.zeros(3, dtype=torch.float64, device=self.device)
        for w in weights:
            a = self.base[self.names[id(w)]].to(self.device).reshape(-1).double()
            b = w.detach().reshape(-1).double()
            out += torch.stack((a @ b, a @ a, b @ b))
        return out


def angle_from_stats(stats: torch.Tensor) -> torch.Tensor:
    """arccos(<V0, V> / (|V0| |V|)) from [..., 3] statistics (<V0, V>, |V0|^2, |V|^2)."""
    dot, n0, n1 = stats.unbind(-1)
    return torch.arccos((dot / (n0.sqrt() * n1.sqrt())).clamp(-1.0, 1.0))


class BlockAngles:
    """Block statistics of a supernet against base weights, and the angles of any set of children."""

    def __init__(self, model: MobileSuperNet, base: Mapping[str, torch.Tensor]) -> None:
        stats = BlockStats(model, base)
        self.fixed = stats(model.fixed_weights())
        # table[layer, op] for op 0..5; column 6 (index -1) is identity and stays zero
        self.table = torch.zeros(len(model.layers), len(BLOCK_KEYS) + 1, 3, dtype=torch.float64,
                                 device=stats.device)
        for layer in range(len(model.layers)):
            for op in range(len(BLOCK_KEYS)):
                self.table[layer, op] = stats(model.block_weights(layer, op))

    def angles(self, archs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Angles (radians, float64) of children ``archs`` [N, layers] (``-1`` = identity)."""
        archs = torch.as_tensor(np.asarray(archs), dtype=torch.long, device=self.table.device)
        archs = torch.where(archs == IDENTITY, len(BLOCK_KEYS), archs)
        layers = torch.arange(archs.shape[1], device=archs.device)
        return angle_from_stats(self.fixed + self.table[layers, archs].sum(dim=1))
