"""The relaxed supernet of a MobileNet space (upstream ProxylessNAS' ``SuperProxylessNASNets`` with per-layer
candidates, as ABS builds it from an operations file): stem, fixed t=1 block, one mixed op per layer over the
blocks its list allows (identity, op -1, returns its input: the block is skipped), 1x1 head, pool, linear."""
from __future__ import annotations

from typing import Sequence

import torch

from anglenas.spaces.chain import ChainRelaxedSupernet
from anglenas.spaces.mobilenet.blocks import IDENTITY, MobileLayout, add_ends, forward_head, forward_stem, make_block


class MobileRelaxedSupernet(ChainRelaxedSupernet):
    """The ProxylessNAS / FBNet supernet of a MobileNet space restricted to ``ops`` (one op-id list per layer)."""

    empty_ops = (IDENTITY,)

    def __init__(self, space: MobileLayout, ops: Sequence[Sequence[int]], skip_dropout: bool = False) -> None:
        super().__init__(ops)
        self.space = space
        add_ends(self, space, self.build_layers(skip_dropout))

    def candidate(self, layer: int, op: int) -> torch.nn.Module:
        spec = self.space.layers[layer]
        return make_block(op, spec.inp, spec.oup, spec.stride)

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        return forward_stem(self, x)

    def post(self, x: torch.Tensor) -> torch.Tensor:
        return forward_head(self, x)
