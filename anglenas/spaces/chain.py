"""The relaxed supernet of a chain space (MobileNet gpu / fairnas, ShuffleNetV2): the ProxylessNAS / FBNet layer.

Every searchable layer is one :class:`~anglenas.spaces.relaxed.MixedOp` over the ops its operations list allows;
a layer with one op is fixed (no architecture weight). Each searchable layer has its own architecture weights
``alphas.{layer}`` (one group, ``"layers"``), as upstream ProxylessNAS' ``MixedEdge.AP_path_alpha``; they start at
0 (a searcher initialises them). :meth:`ChainRelaxedSupernet.derive` is the argmax op of every layer.

A family subclasses it with the parts around the layers (stem, head, classifier: the same builders as its
single-path supernet and stand-alone network) and the candidate block of (layer, op).
"""
from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from anglenas.errors import UserError
from anglenas.spaces.relaxed import GroupOps, RelaxedSupernet, check_group_ops

if TYPE_CHECKING:
    from anglenas.spaces.base import SearchSpace


def skip_candidate(skip_dropout: bool) -> nn.Module:
    """The identity candidate (upstream ProxylessNAS' ``Zero`` choice: the block is skipped), with a dropout after
    it for PDARTS (``skip_dropout``; its rate is set by :meth:`RelaxedSupernet.set_skip_dropout`)."""
    return nn.Sequential(nn.Identity(), nn.Dropout(0.0)) if skip_dropout else nn.Identity()


def chain_operations(space: "SearchSpace", ops: Sequence[Sequence[int]] | GroupOps, channels: int | None,
                     depth: int | None) -> list[list[int]]:
    """``ops`` (per layer, or ``{"layers": ...}``) checked against ``space``, a chain space; a chain is sized by
    ``--width_mult`` and has a fixed depth, so ``channels`` and ``depth`` must be None."""
    if channels is not None or depth is not None:
        raise UserError(f"the {space.name} space is a chain of layers: its width is --width_mult and its depth is "
                        f"fixed; it takes no cell channels or cell count (got channels={channels}, depth={depth})")
    return space.check_operations(check_group_ops(ops, ChainRelaxedSupernet.groups)["layers"])


class ChainRelaxedSupernet(RelaxedSupernet):
    """``pre -> layers[0] -> ... -> layers[n-1] -> post`` with one mixed op per layer (see the module docstring).

    A subclass builds its modules in ``__init__`` after calling this one (registering ``layers`` from
    :meth:`build_layers` where its single-path supernet has its layers, so the state-dict order follows it) and
    implements :meth:`candidate`, :meth:`pre` and :meth:`post`.
    """

    groups: ClassVar[tuple[str, ...]] = ("layers",)

    def __init__(self, ops: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.site_ops = [check_group_ops(ops, self.groups)["layers"]]
        self.alphas = nn.ParameterDict([(str(i), nn.Parameter(torch.zeros(len(site))))  # pairs keep layer order
                                        for i, site in enumerate(self.site_ops[0]) if len(site) > 1])
        self.register_buffer("fixed_alpha", torch.zeros(1), persistent=False)  # softmax: [1.] for a fixed layer

    def build_layers(self, skip_dropout: bool = False) -> nn.ModuleList:
        """One mixed op per layer over its candidates (identity, op -1, is :func:`skip_candidate`)."""
        return nn.ModuleList(
            self.mixed_op(0, i, [skip_candidate(skip_dropout) if op < 0 else self.candidate(i, op) for op in site])
            for i, site in enumerate(self.site_ops[0]))

    @abstractmethod
    def candidate(self, layer: int, op: int) -> nn.Module:
        """The block of op ``op`` (>= 0) at layer ``layer``."""

    @abstractmethod
    def pre(self, x: torch.Tensor) -> torch.Tensor:
        """The parts before the searchable layers."""

    @abstractmethod
    def post(self, x: torch.Tensor) -> torch.Tensor:
        """The parts after the searchable layers, down to the logits."""

    def run(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        for layer in self.layers:
            x = layer(x)
        return self.post(x)

    # -- architecture weights -------------------------------------------------------------------------------------
    def alpha(self, group: int, site: int) -> torch.Tensor:
        key = str(site)
        return self.alphas[key] if key in self.alphas else self.fixed_alpha

    @staticmethod
    def is_arch_name(name: str) -> bool:
        return name.startswith("alphas.")

    def derive(self, probabilities: list[list[np.ndarray]] | None = None) -> list[int]:
        """The op id of the most probable candidate of every layer (ties: the first in the layer's list)."""
        probs = self.probabilities() if probabilities is None else probabilities
        return [site[int(np.argmax(p))] for site, p in zip(self.site_ops[0], probs[0])]
