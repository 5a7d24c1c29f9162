"""Angles of NB201 architectures by block decomposition (spec §3.4, NB201 vector; the ideas of
:mod:`anglenas.abs.angle`).

The original builds, per architecture, V(W, a) = [fixed weights, then path-major: for each input-to-output path
(0-3, 0-2-3, 0-1-2-3, 0-1-3) and each search cell, the weights of the path's edges: conv -> its weight,
avg_pool -> a constant [C, 3, 3] tensor of 1/9 (the pooling seen as a fixed conv), skip -> nothing; a path with
a ``none`` edge is left out]. An edge appears once per path that runs through it.

Here V is never built: each (cell, edge, op) contributes three numbers <w0, w>, |w0|^2, |w|^2, a path of a
cell contributes the sum over its edges when none of them is ``none``, and an architecture the sum over paths
and cells plus the fixed part. All 15,625 cells are then a few gathers over a [cells, 6, 5, 3] table.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from anglenas.abs.angle import BlockStats, angle_from_stats, snapshot
from anglenas.nb201.model import NB201SuperNet
from anglenas.nb201.space import CONV1, CONV3, NONE, NUM_EDGES, OPS, PATHS, POOL, path_edges

__all__ = ["CellAngles", "snapshot", "PATH_MASK"]

PATH_MASK = torch.zeros(len(PATHS), NUM_EDGES, dtype=torch.float64)
"""PATH_MASK[p, e] = 1 if edge e lies on path p."""
for _p, _path in enumerate(PATHS):
    PATH_MASK[_p, list(path_edges(_path))] = 1.0


def pool_constant(channels: int) -> torch.Tensor:
    """The fixed [C, 3, 3] tensor of 1/9 that stands for a 3x3 average pooling in V (spec §3.4)."""
    return torch.full((channels, 3, 3), 1.0 / 9.0, dtype=torch.float64)


class CellAngles:
    """Block statistics of an NB201 supernet against base weights W0; angles and norms of any architectures.

    ``stats(archs)`` gives [N, 3] = (<V0, V>, |V0|^2, |V|^2) for ``archs`` [N, 6] (one cell shared by every
    search cell, as the benchmark's architectures) or [N, cells, 6] (a cell per search cell).
    """

    def __init__(self, model: NB201SuperNet, base: Mapping[str, torch.Tensor]) -> None:
        block_stats = BlockStats(model, base)
        device = block_stats.device
        self.fixed = block_stats(model.fixed_weights())
        # table[cell, edge, op]; none and skip stay zero
        self.table = torch.zeros(len(model.search_cells), NUM_EDGES, len(OPS), 3, dtype=torch.float64, device=device)
        for c, cell in enumerate(model.search_cells):
            for e in range(NUM_EDGES):
                for op in (CONV1, CONV3):
                    self.table[c, e, op] = block_stats([cell.conv_weight(e, op)])
                self.table[c, e, POOL] = float(pool_constant(cell.channels).square().sum())
        self.mask = PATH_MASK.to(device)

    def stats(self, archs: np.ndarray | torch.Tensor) -> torch.Tensor:
        archs = torch.as_tensor(np.asarray(archs), dtype=torch.long, device=self.table.device)
        shared = archs.dim() == 2
        if shared:  # the same cell everywhere: sum the table over cells first
            table = self.table.sum(0, keepdim=True)
            archs = archs[:, None, :]
        else:
            table = self.table
        cells = torch.arange(table.shape[0], device=archs.device)[None, :, None]
        edges = torch.arange(NUM_EDGES, device=archs.device)[None, None, :]
        per_edge = table[cells, edges, archs]                                   # [N, cells, 6, 3]
        alive = torch.stack([(archs[..., list(path_edges(p))] != NONE).all(-1) for p in PATHS], -1)  # [N, cells, 4]
        per_path = torch.einsum("pe,ncek->ncpk", self.mask, per_edge)         # [N, cells, 4, 3]
        return self.fixed + (alive[..., None] * per_path).sum(dim=(1, 2))

    def angles(self, archs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Angles (radians, float64) between V(W0, a) and V(W, a)."""
        return angle_from_stats(self.stats(archs))

    def magnitudes(self, archs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """|V(W, a)|: the norm of the architecture's trained weight vector."""
        return self.stats(archs)[:, 2].sqrt()
