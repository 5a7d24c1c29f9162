"""Weight-sharing single-path supernet of the MobileNet spaces (the original's ``*/shrinking/super_model.py``)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from anglenas.spaces.mobilenet.blocks import (
    BLOCK_KEYS,
    IDENTITY,
    LayerSpec,
    MobileLayout,
    add_ends,
    make_block,
    run_chain,
)


class ChoiceLayer(nn.Module):
    """All candidate blocks of one searchable layer; ``forward(x, op)`` runs one of them (or identity)."""

    def __init__(self, layer: LayerSpec) -> None:
        super().__init__()
        self.identity_allowed = layer.identity_allowed
        self.ops = nn.ModuleList(make_block(op, layer.inp, layer.oup, layer.stride) for op in range(len(BLOCK_KEYS)))

    def forward(self, x: torch.Tensor, op: int) -> torch.Tensor:
        return x if op == IDENTITY else self.ops[op](x)


class MobileSuperNet(nn.Module):
    """Stem -> fixed t=1 block -> one :class:`ChoiceLayer` per searchable layer -> 1x1 head -> pool -> linear.

    ``forward(x, arch)`` runs the single path ``arch`` (one op index per layer, ``-1`` = identity). Implements the
    angle's weight protocol (:class:`~anglenas.spaces.base.AngleWeights`) of a chain space.
    """

    num_instances = 1

    def __init__(self, space: MobileLayout) -> None:
        super().__init__()
        self.space = space
        add_ends(self, space, nn.ModuleList(ChoiceLayer(layer) for layer in space.layers))

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        if len(arch) != len(self.layers):
            raise ValueError(f"architecture has {len(arch)} layers, the {self.space.name} space has {len(self.layers)}")

        def layers(x: torch.Tensor) -> torch.Tensor:
            for layer, op in zip(self.layers, arch):
                x = layer(x, int(op))
            return x

        return run_chain(self, x, layers)

    def fixed_weights(self) -> list[torch.Tensor]:
        """Weights every path shares, in the angle vector's order: stem, first block dw+pw, head, classifier."""
        return [self.stem[0].weight, *self.first_block.conv_weights, self.head[0].weight, self.classifier.weight]

    def choice_weights(self, site: int, op: int, instance: int = 0) -> list[torch.Tensor]:
        """Conv weights of block ``op`` in layer ``site`` (empty for identity)."""
        return [] if op == IDENTITY else self.layers[site].ops[op].conv_weights
