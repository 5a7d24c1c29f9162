"""The relaxed supernet of the ShuffleNetV2 space: stem, one mixed op per block over the ops its operations list
allows, 1x1 head, pool, linear; BN without affine parameters, as the authors' supernet."""
from __future__ import annotations

from typing import Sequence

import torch

from anglenas.spaces.chain import ChainRelaxedSupernet
from anglenas.spaces.shufflenetv2.model import ShuffleLayout, add_ends, forward_head, make_block


class ShuffleRelaxedSupernet(ChainRelaxedSupernet):
    """The ProxylessNAS / FBNet supernet of the ShuffleNetV2 space restricted to ``ops`` (op ids per block)."""

    def __init__(self, space: ShuffleLayout, ops: Sequence[Sequence[int]], skip_dropout: bool = False) -> None:
        super().__init__(ops)
        self.space = space
        add_ends(self, space, affine=False)
        self.layers = self.build_layers(skip_dropout)  # after the ends, as in the single-path supernet

    def candidate(self, layer: int, op: int) -> torch.nn.Module:
        return make_block(op, self.space.sites[layer], affine=False)

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def post(self, x: torch.Tensor) -> torch.Tensor:
        return forward_head(self, x)
