"""The stand-alone network of one architecture (the original's ``*/training/model.py``): the supernet's path as a plain
model.

Identity layers are removed and dropout (0.2) sits before the classifier. Module names follow the supernet with
the choice level dropped: supernet ``layers.7.ops.5.conv.0.weight`` is network ``layers.7.conv.0.weight``, so
the weights of a supernet path map onto the network one to one (:func:`path_state_dict`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from anglenas.spaces.mobilenet.blocks import IDENTITY, MobileLayout, add_ends, make_block, run_chain


class MobileNetwork(nn.Module):
    """Stem -> fixed t=1 block -> the chosen block of every non-identity layer -> 1x1 head -> pool -> dropout
    -> linear. ``layers`` is keyed by the layer's index in the space (identity layers are absent)."""

    def __init__(self, space: MobileLayout, arch: Sequence[int], dropout: float = 0.2) -> None:
        super().__init__()
        if len(arch) != len(space.layers):
            raise ValueError(f"architecture has {len(arch)} layers, the {space.name} space has {len(space.layers)}")
        self.space, self.arch = space, [int(op) for op in arch]
        add_ends(self, space, nn.ModuleDict({
            str(i): make_block(op, layer.inp, layer.oup, layer.stride)
            for i, (op, layer) in enumerate(zip(self.arch, space.layers)) if op != IDENTITY}), dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_chain(self, x, self._layers)

    def _layers(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers.values():
            x = block(x)
        return x


def path_state_dict(supernet_state: Mapping[str, torch.Tensor], arch: Sequence[int]) -> dict[str, torch.Tensor]:
    """The weights of path ``arch`` of a :class:`~anglenas.spaces.mobilenet.supernet.MobileSuperNet` state dict,
    named for :class:`MobileNetwork` (unsampled blocks are left out)."""
    out = {}
    for key, value in supernet_state.items():
        if not key.startswith("layers."):
            out[key] = value
            continue
        _, layer, ops, op, rest = key.split(".", 4)
        if ops == "ops" and int(op) == int(arch[int(layer)]):
            out[f"layers.{layer}.{rest}"] = value
    return out
