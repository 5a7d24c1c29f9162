"""The ProxylessNAS supernet over a MobileNet space restricted to an operations list (upstream
``SuperProxylessNASNets`` with per-layer candidates): stem, fixed t=1 block, one :class:`MixedLayer` per layer,
1x1 head, pool, linear. Only the ops each layer allows are built; a layer with one op is fixed (no parameter)."""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from anglenas.searchers.proxyless.gates import MixedLayer
from anglenas.spaces.mobilenet.blocks import InvertedResidual, MobileLayout, conv_bn_relu6


class ProxylessSuperNet(nn.Module):
    """``forward(x)`` runs the path(s) each layer's gate state selects (see :meth:`sample`, :meth:`choose_argmax`)."""

    def __init__(self, space: MobileLayout, ops: list[list[int]]) -> None:
        super().__init__()
        self.space = space
        self.stem = conv_bn_relu6(3, space.stem_channels, 3, space.stem_stride)
        self.first_block = InvertedResidual(space.stem_channels, space.first_block_channels, 3, 1, 1)
        self.layers = nn.ModuleList(MixedLayer(layer, site) for layer, site in zip(space.layers, ops))
        self.head = conv_bn_relu6(space.layers[-1].oup, space.head_channels, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(space.head_channels, space.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for layer in self.layers:
            x = layer(x)
        return self.classifier(self.pool(self.head(x)).flatten(1))

    # -- parameters -----------------------------------------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return [layer.alpha for layer in self.layers if layer.searchable]

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch)

    def init_arch_params(self, std: float, generator: torch.Generator) -> None:
        """alpha ~ N(0, std) (the original's ``arch_init_type=normal``, ``arch_init_ratio=1e-3``)."""
        with torch.no_grad():
            for alpha in self.arch_parameters():
                alpha.copy_(torch.randn(alpha.shape, generator=generator) * std)

    # -- gate state -----------------------------------------------------------------------------------------------
    def sample(self, mode: str, generator: torch.Generator) -> None:
        for layer in self.layers:
            layer.sample(mode, generator)

    def choose_argmax(self) -> None:
        for layer in self.layers:
            layer.choose(layer.argmax())

    def set_arch_grads(self) -> None:
        for layer in self.layers:
            layer.set_alpha_grad()

    def rescale_pairs(self) -> None:
        for layer in self.layers:
            layer.rescale_pair()

    # -- readouts -------------------------------------------------------------------------------------------------
    def probs(self) -> list[torch.Tensor]:
        """softmax(alpha) of every layer (``[1.]`` for fixed layers), detached, on the CPU."""
        return [layer.probs().detach().float().cpu() for layer in self.layers]

    def cost_probs(self) -> list[torch.Tensor]:
        """The differentiable probabilities of the expected-cost term (see :meth:`MixedLayer.cost_probs`)."""
        return [layer.cost_probs().to(self.classifier.weight.device) for layer in self.layers]

    def argmax_picks(self) -> list[int]:
        """The most probable candidate of every layer (an index into its ops list)."""
        return [layer.argmax() for layer in self.layers]

    def argmax_arch(self) -> list[int]:
        """The learned architecture: the op id of the most probable candidate of every layer."""
        return [layer.ops[layer.argmax()] for layer in self.layers]
