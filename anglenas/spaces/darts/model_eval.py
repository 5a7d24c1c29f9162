"""Networks built from a genotype: ``NetworkCIFAR`` (DARTS CIFAR evaluation) and ``NetworkImageNet`` (the ImageNet
training of the found cells).

quark0/darts ``cnn/model.py``: cells of 4 nodes with 2 inputs each, reductions at 1/3 and 2/3 of the depth, an
auxiliary head after the second reduction (2/3 depth), drop-path on every non-identity edge while training.
``forward`` returns ``(logits, logits_aux)`` in training mode when the auxiliary head is on, else ``logits``.
"""
from __future__ import annotations

import torch
from torch import nn

from anglenas.spaces.darts.genotypes import Genotype
from anglenas.spaces.darts.ops import OPS, FactorizedReduce, Identity, ReLUConvBN


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob`` and rescale the rest (not in place)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class Cell(nn.Module):
    """One cell of a genotype: node i sums op(state a) + op(state b) over its two edges."""

    def __init__(self, genotype: Genotype, C_prev_prev: int, C_prev: int, C: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.preprocess0 = FactorizedReduce(C_prev_prev, C) if reduction_prev else ReLUConvBN(C_prev_prev, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = list(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.multiplier = len(self.concat)
        self.steps = len(edges) // 2
        self.indices = [int(src) for _, src in edges]
        self.ops = nn.ModuleList(OPS[name](C, 2 if reduction and src < 2 else 1, True) for name, src in edges)
        self.reduction = reduction

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            total = 0
            for e in (2 * i, 2 * i + 1):
                h = self.ops[e](states[self.indices[e]])
                if self.training and drop_prob > 0.0 and not isinstance(self.ops[e], Identity):
                    h = drop_path(h, drop_prob)
                total = total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """Auxiliary classifier: ReLU, 5x5 average pool (stride ``pool_stride``) to 2x2, 1x1 conv to 128, BN, ReLU,
    2x2 conv to 768, BN, ReLU, linear."""

    def __init__(self, C: int, num_classes: int, pool_stride: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False), nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadCIFAR(AuxiliaryHead):
    """On an 8x8 feature map (pool stride 3)."""

    def __init__(self, C: int, num_classes: int):
        super().__init__(C, num_classes, pool_stride=3)


class AuxiliaryHeadImageNet(AuxiliaryHead):
    """On a 7x7 map (pool stride 2). With the ``BatchNorm2d(768)`` that AngleNAS' DARTS ImageNet training model has
    (quark0/darts' ``AuxiliaryHeadImageNet`` omits it)."""

    def __init__(self, C: int, num_classes: int):
        super().__init__(C, num_classes, pool_stride=2)


class _GenotypeNetwork(nn.Module):
    """Cells, auxiliary head at 2/3 depth, global pool and classifier; subclasses define the stem."""

    drop_path_prob: float

    def _build_cells(self, genotype: Genotype, C_prev_prev: int, C_prev: int, C: int, layers: int,
                     reduction_prev: bool) -> int:
        self.layers = layers
        self.aux_position = 2 * layers // 3
        self.cells = nn.ModuleList()
        C_curr, C_aux = C, C_prev
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = Cell(genotype, C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == self.aux_position:
                C_aux = C_prev
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, self.num_classes)
        self.drop_path_prob = 0.0
        return C_aux

    def _stem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor):
        s0, s1 = self._stem(x)
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_position and self.auxiliary and self.training:
                logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return (logits, logits_aux) if logits_aux is not None else logits


class NetworkCIFAR(_GenotypeNetwork):
    """DARTS CIFAR network: 3x3 stem to 3C channels, ``layers`` cells starting at C channels."""

    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype):
        super().__init__()
        self.num_classes, self.auxiliary = num_classes, auxiliary
        C_stem = 3 * C
        self.stem = nn.Sequential(nn.Conv2d(3, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem))
        C_aux = self._build_cells(genotype, C_stem, C_stem, C, layers, reduction_prev=False)
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadCIFAR(C_aux, num_classes)

    def _stem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.stem(x)
        return s, s


class NetworkImageNet(_GenotypeNetwork):
    """DARTS ImageNet network: two strided stems (224 -> 56 -> 28), ``layers`` cells at C channels."""

    def __init__(self, C: int, num_classes: int, layers: int, auxiliary: bool, genotype: Genotype):
        super().__init__()
        self.num_classes, self.auxiliary = num_classes, auxiliary
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, C // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C // 2), nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(C))
        C_aux = self._build_cells(genotype, C, C, C, layers, reduction_prev=True)
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadImageNet(C_aux, num_classes)

    def _stem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)
