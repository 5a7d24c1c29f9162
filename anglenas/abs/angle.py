"""The angle metric of ABS (the paper's Algorithm 1), one engine for every registered space.

The weight vector V(W, a) of child ``a`` concatenates the weights every child shares and, for each input-to-output
path of each cell instance, the weights of the ops ``a`` places along it: an op appears once per path through it,
a path with a path-breaking op (``none``) is left out, a constant tensor (pooling as a fixed 1/k^2 kernel) has the
same value in W0 and W, identity / skip add nothing. A chain space (MobileNet, ShuffleNetV2) is one cell with one
path through every site. The angle is

    theta(a) = arccos( <V(W0, a), V(W, a)> / (|V(W0, a)| |V(W, a)|) ).

V is never built: each (instance, site, op) contributes three numbers <w0, w>, |w0|^2 and |w|^2, a path the sum
over its sites, a child the sum over its live paths and instances plus the fixed part. Scoring N children is a
gather over an [instances, sites, ops, 3] table: milliseconds for millions of chain candidates.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from anglenas.spaces.base import SearchSpace


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's parameters (the base weights W0 of the angle)."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


class BlockStats:
    """``stats(weights)``: [<w0, w>, |w0|^2, |w|^2] summed over ``weights`` and their base weights W0, in float64
    on the model's device. A tensor that is not a parameter of ``model`` is a constant (the same in W0 and W)."""

    def __init__(self, model: torch.nn.Module, base: Mapping[str, torch.Tensor]) -> None:
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.base, self.device = base, next(model.parameters()).device

    def __call__(self, weights: list[torch.Tensor]) -> torch.Tensor:
        out = torch.zeros(3, dtype=torch.float64, device=self.device)
        for w in weights:
            b = w.detach().reshape(-1).to(self.device, torch.float64)
            name = self.names.get(id(w))
            a = b if name is None else self.base[name].to(self.device).reshape(-1).double()
            out += torch.stack((a @ b, a @ a, b @ b))
        return out


def angle_from_stats(stats: torch.Tensor) -> torch.Tensor:
    """arccos(<V0, V> / (|V0| |V|)) from [..., 3] statistics (<V0, V>, |V0|^2, |V|^2)."""
    dot, n0, n1 = stats.unbind(-1)
    return torch.arccos((dot / (n0.sqrt() * n1.sqrt())).clamp(-1.0, 1.0))


class ArchAngles:
    """Block statistics of a supernet against base weights W0; angles and norms of any set of architectures.

    ``model`` implements :class:`~anglenas.spaces.base.AngleWeights`; ``space`` gives the op table, the paths and
    the path-breaking ops. ``archs`` are [N, sites] (one choice shared by every cell instance) or
    [N, instances, sites] (a choice per instance).
    """

    def __init__(self, model: torch.nn.Module, base: Mapping[str, torch.Tensor], space: SearchSpace) -> None:
        block_stats = BlockStats(model, base)
        device = block_stats.device
        self.fixed = block_stats(model.fixed_weights())
        num_sites, num_ops = space.num_sites, len(space.op_names)
        allowed = space.initial_operations()
        self.table = torch.zeros(model.num_instances, num_sites, num_ops, 3, dtype=torch.float64, device=device)
        for c in range(model.num_instances):
            for s in range(num_sites):
                for op in allowed[s]:
                    self.table[c, s, op % num_ops] = block_stats(model.choice_weights(s, op, c))
        paths = space.angle_paths
        self.chain = paths is None and not space.path_breakers
        paths = paths if paths is not None else (tuple(range(num_sites)),)
        self.mask = torch.zeros(len(paths), num_sites, dtype=torch.float64, device=device)
        for p, sites in enumerate(paths):
            self.mask[p, list(sites)] = 1.0
        self.breakers = [b % num_ops for b in space.path_breakers]
        self.num_ops = num_ops

    def stats(self, archs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """[N, 3] = (<V0, V>, |V0|^2, |V|^2) of ``archs``."""
        archs = torch.as_tensor(np.asarray(archs), dtype=torch.long, device=self.table.device) % self.num_ops
        table = self.table
        if archs.dim() == 2:  # one choice for every instance: sum the table over instances first
            table, archs = table.sum(0, keepdim=True), archs[:, None, :]
        instances = torch.arange(table.shape[0], device=archs.device)[None, :, None]
        sites = torch.arange(table.shape[1], device=archs.device)[None, None, :]
        per_site = table[instances, sites, archs]                                  # [N, C, S, 3]
        if self.chain:
            return self.fixed + per_site.sum(dim=(1, 2))
        on_path = self.mask.bool()
        alive = torch.ones(*archs.shape[:2], len(self.mask), dtype=torch.bool, device=archs.device)
        for b in self.breakers:
            alive &= ~((archs == b)[:, :, None, :] & on_path).any(-1)              # [N, C, P]
        per_path = torch.einsum("ps,ncsk->ncpk", self.mask, per_site)            # [N, C, P, 3]
        return self.fixed + (alive[..., None] * per_path).sum(dim=(1, 2))

    def angles(self, archs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Angles (radians, float64) between V(W0, a) and V(W, a)."""
        return angle_from_stats(self.stats(archs))

    def magnitudes(self, archs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """|V(W, a)|: the norm of the architecture's trained weight vector."""
        return self.stats(archs)[:, 2].sqrt()
