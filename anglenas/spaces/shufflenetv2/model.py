"""The SPOS ShuffleNetV2 blocks, supernet and stand-alone network (the authors' version,
megvii-model/SinglePathOneShot).

A block splits its input into even and odd channels (the authors' channel shuffle). Stride 1: the even half passes
through and the odd half goes through the main branch. Stride 2: a projection branch (k x k depthwise, 1x1) keeps the
input width and the main branch makes the rest of the output channels. No ReLU follows a depthwise conv and no conv
has a bias. Op ids: 0, 1, 2 = ShuffleNet block 3x3, 5x5, 7x7; 3 = Shuffle-Xception.

BN: the supernet's has no affine parameters (the authors' ``affine=False``), the stand-alone network's has them.
Module names: supernet ``layers.7.ops.2.main.3.weight`` is network ``layers.7.main.3.weight``
(:func:`path_state_dict`; the network's BN gets the identity affine).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class Site:
    """One searchable block: channels in / out, stride and the spatial size of its input."""

    inp: int
    oup: int
    stride: int
    input_res: int


class ShuffleLayout(Protocol):
    """What the networks read of a :class:`~anglenas.spaces.shufflenetv2.space.ShuffleNetV2Space`."""

    stem_channels: int
    stem_stride: int
    sites: tuple[Site, ...]
    head_channels: int
    num_classes: int


KERNELS = (3, 5, 7, 3)
"""Depthwise kernel of each op id (the Shuffle-Xception block, op 3, uses 3x3 throughout)."""
XCEPTION = 3


def channel_split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(even channels, odd channels) of ``x`` [N, C, H, W]: the authors' ``channel_shuffle``."""
    return x[:, 0::2], x[:, 1::2]


def _dw_bn(channels: int, kernel: int, stride: int, affine: bool) -> list[nn.Module]:
    return [nn.Conv2d(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False),
            nn.BatchNorm2d(channels, affine=affine)]


def _pw_bn_relu(inp: int, oup: int, affine: bool) -> list[nn.Module]:
    return [nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup, affine=affine), nn.ReLU(inplace=True)]


def conv_bn_relu(inp: int, oup: int, kernel: int, stride: int, affine: bool = True) -> nn.Sequential:
    """Conv (no bias) -> BN -> ReLU: the stem (3x3) and the head (1x1)."""
    return nn.Sequential(nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(oup, affine=affine), nn.ReLU(inplace=True))


class ShuffleBlock(nn.Module):
    """A ShuffleNet (k x k) or Shuffle-Xception block of the SPOS supernet.

    Stride 1 needs ``inp == oup``; the main branch maps inp/2 -> oup/2. Stride 2: the projection branch maps
    inp -> inp, the main branch inp -> oup - inp. The middle width of the main branch is oup/2. The projection
    branch is registered first, as it comes first in the output (and in :attr:`conv_weights`). ``affine``: BN with
    affine parameters (the stand-alone network) or without (the supernet, as the authors').
    """

    def __init__(self, inp: int, oup: int, stride: int, kernel: int, xception: bool = False,
                 affine: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2) or (stride == 1 and inp != oup) or inp % 2:
            raise ValueError(f"a shuffle block needs stride 1 with inp == oup (even) or stride 2; got {inp} -> "
                             f"{oup}, stride {stride}")
        branch_in = inp // 2 if stride == 1 else inp
        branch_out, mid = oup - branch_in, oup // 2
        if branch_out <= 0:
            raise ValueError(f"a stride-2 shuffle block needs more output than input channels; got {inp} -> {oup}")
        self.stride = stride
        a = affine
        self.proj = nn.Sequential(*_dw_bn(inp, kernel, stride, a), *_pw_bn_relu(inp, inp, a)) if stride == 2 else None
        if xception:
            main = [*_dw_bn(branch_in, 3, stride, a), *_pw_bn_relu(branch_in, mid, a),
                    *_dw_bn(mid, 3, 1, a), *_pw_bn_relu(mid, mid, a),
                    *_dw_bn(mid, 3, 1, a), *_pw_bn_relu(mid, branch_out, a)]
        else:
            main = [*_pw_bn_relu(branch_in, mid, a), *_dw_bn(mid, kernel, stride, a),
                    *_pw_bn_relu(mid, branch_out, a)]
        self.main = nn.Sequential(*main)

    @property
    def branches(self) -> list[nn.Sequential]:
        """The conv chains of the block (projection first when present), each fed the block's input size."""
        return [b for b in (self.proj, self.main) if b is not None]

    @property
    def conv_weights(self) -> list[torch.Tensor]:
        """The block's conv weights in forward order (its contribution to the angle vector)."""
        return [m.weight for branch in self.branches for m in branch if isinstance(m, nn.Conv2d)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is None:
            keep, x = channel_split(x)
            return torch.cat((keep, self.main(x)), 1)
        return torch.cat((self.proj(x), self.main(x)), 1)


def make_block(op: int, site: Site, affine: bool = True) -> ShuffleBlock:
    """The candidate block of op id ``op`` (0..3) at ``site``."""
    return ShuffleBlock(site.inp, site.oup, site.stride, KERNELS[op], xception=op == XCEPTION, affine=affine)


class ChoiceBlock(nn.Module):
    """The four candidate blocks of one site; ``forward(x, op)`` runs one."""

    def __init__(self, site: Site) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_block(op, site, affine=False) for op in range(len(KERNELS)))

    def forward(self, x: torch.Tensor, op: int) -> torch.Tensor:
        return self.ops[op](x)


def add_ends(model: nn.Module, space: ShuffleLayout, affine: bool = True) -> None:
    """The parts every path shares: conv-BN-ReLU stem; 1x1 head, global average pool, linear without bias."""
    model.stem = conv_bn_relu(3, space.stem_channels, 3, space.stem_stride, affine)
    model.head = conv_bn_relu(space.sites[-1].oup, space.head_channels, 1, 1, affine)
    model.pool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Linear(space.head_channels, space.num_classes, bias=False)


def forward_head(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Head, pooling, dropout (if any) and classifier of a model built with :func:`add_ends`."""
    x = model.pool(model.head(x)).flatten(1)
    return model.classifier(model.dropout(x) if hasattr(model, "dropout") else x)


class ShuffleSuperNet(nn.Module):
    """Stem -> one :class:`ChoiceBlock` per site -> 1x1 head -> pool -> linear; ``forward(x, arch)`` runs one path.

    BN without affine parameters throughout (the authors' supernet). Implements the angle weight protocol
    (:class:`anglenas.spaces.base.AngleWeights`).
    """

    num_instances = 1

    def __init__(self, space: ShuffleLayout) -> None:
        super().__init__()
        add_ends(self, space, affine=False)
        self.layers = nn.ModuleList(ChoiceBlock(site) for site in space.sites)

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        if len(arch) != len(self.layers):
            raise ValueError(f"architecture has {len(arch)} op ids, the supernet has {len(self.layers)} sites")
        x = self.stem(x)
        for layer, op in zip(self.layers, arch):
            x = layer(x, int(op))
        return forward_head(self, x)

    def fixed_weights(self) -> list[torch.Tensor]:
        """Weights every path shares: stem conv, head conv, classifier."""
        return [self.stem[0].weight, self.head[0].weight, self.classifier.weight]

    def choice_weights(self, site: int, op: int, instance: int = 0) -> list[torch.Tensor]:
        """Conv weights of block ``op`` at ``site`` in forward order (projection branch, then main branch)."""
        return self.layers[site].ops[op].conv_weights


class ShuffleNetwork(nn.Module):
    """The stand-alone network of one architecture: stem -> its 20 blocks -> head -> pool -> dropout -> linear."""

    def __init__(self, space: ShuffleLayout, arch: Sequence[int], dropout: float = 0.1) -> None:
        super().__init__()
        add_ends(self, space)
        self.layers = nn.ModuleList(make_block(int(op), site) for op, site in zip(arch, space.sites))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.layers:
            x = block(x)
        return forward_head(self, x)


def path_state_dict(supernet_state: Mapping[str, torch.Tensor], arch: Sequence[int]) -> dict[str, torch.Tensor]:
    """The weights of path ``arch`` of a :class:`ShuffleSuperNet` state dict, named for :class:`ShuffleNetwork`
    (loadable with ``strict=True``): the supernet's BN has no affine parameters, the network's gets the identity
    affine (gamma 1, beta 0), so the network computes what the supernet path computes."""
    out = {}
    for key, value in supernet_state.items():
        if key.startswith("layers."):
            _, site, _ops, op, rest = key.split(".", 4)
            if int(op) != int(arch[int(site)]):
                continue
            key = f"layers.{site}.{rest}"
        out[key] = value
        if key.endswith(".running_mean"):
            bn = key[:-len("running_mean")]
            out.setdefault(bn + "weight", torch.ones_like(value))
            out.setdefault(bn + "bias", torch.zeros_like(value))
    return out
