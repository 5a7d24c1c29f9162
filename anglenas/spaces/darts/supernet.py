"""The ImageNet DARTS supernet of ABS (the original's ``DARTS/shrinking``), its progressive warm-up, and the stand-alone
child network.

Layout: stem0 (two 3x3 s2 convs), stem1 (3x3 s2 conv), cells, global pool, linear. A cell has 2 inputs, 4 nodes
and 14 edges (edge of node j from state k = k + offset(j), offset = 0, 2, 5, 9); in the supernet every edge holds
all 8 primitives (pools followed by an affine BN) and ``forward(x, arch)`` runs one op per edge, the same 14 op
ids in every cell (or one 14-op list per cell).

Warm-up: the supernet starts from 3 cells [N, R, R] and :meth:`DartsSuperNet.insert_cell` adds a normal cell 11
times at the positions of :func:`warmup_schedule` (2, 4, 1, 4, 7, 2, 6, 10, 3, 8, 13) until the final layout
``N N N N R N N N N R N N N N``. Channel counts come from :func:`cell_specs`, a pure function of the layout: a
cell's preprocessing follows its actual inputs, and a reduction cell whose two inputs differ in channels takes
its second input twice (the original's forward rule). Inserting a cell never changes the spec of an existing cell
(checked at every insertion), so all trained weights keep their meaning.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from anglenas.spaces.darts.ops import OPS, PRIMITIVES, FactorizedReduce, ReLUConvBN

NUM_NODES = 4
NUM_EDGES = 14
EDGE_OFFSET = (0, 2, 5, 9)
"""Edge index of (node j <- state k) = EDGE_OFFSET[j - 2] + k."""
NONE, MAX_POOL, AVG_POOL, SKIP, SEP3, SEP5, DIL3, DIL5 = range(len(PRIMITIVES))

START_LAYOUT = (False, True, True)
"""The warm-up's first network: [N, R, R] (True = reduction cell)."""
INSERTED_CELLS = 11


def edge_index(node: int, state: int) -> int:
    """Edge of intermediate node ``node`` (2..5) fed by state ``state`` (0..node-1)."""
    return EDGE_OFFSET[node - 2] + state


def edge_endpoints(edge: int) -> tuple[int, int]:
    """(node, input state) of ``edge``."""
    for node in range(5, 1, -1):
        if edge >= EDGE_OFFSET[node - 2]:
            return node, edge - EDGE_OFFSET[node - 2]
    raise ValueError(f"edge {edge} out of range")


# -- layout and warm-up --------------------------------------------------------------------------------------------
def final_layout(layers: int = 14) -> tuple[bool, ...]:
    """Reductions at cells layers // 3 and 2 * layers // 3 (upstream NetworkImageNet)."""
    return tuple(i in (layers // 3, 2 * layers // 3) for i in range(layers))


def next_insert_position(layout: Sequence[bool]) -> int:
    """Where the warm-up inserts the next normal cell (the original's ``insert_layer``): the end of the front segment if
    the three segments of normal cells are equally long, else the end of the middle one if it is shorter than the front,
    else the end of the network."""
    first, second = [i for i, r in enumerate(layout) if r]
    front, mid, back = first, second - first - 1, len(layout) - second - 1
    if front == mid == back:
        return first
    if mid < front:
        return second
    return len(layout)


def warmup_schedule() -> list[int]:
    """The 11 insertion positions of the warm-up, from [N, R, R] to the 14-cell network."""
    layout, positions = list(START_LAYOUT), []
    for _ in range(INSERTED_CELLS):
        pos = next_insert_position(layout)
        layout.insert(pos, False)
        positions.append(pos)
    return positions


@dataclass(frozen=True)
class CellSpec:
    """Channels of one cell: inputs (as fed), its own width C (output 4C), and how its inputs are preprocessed."""

    c_prev_prev: int
    c_prev: int
    c: int
    reduction: bool
    reduction_prev: bool  # preprocess0 is a FactorizedReduce (s0 has twice s1's resolution)
    s1_twice: bool  # a reduction cell whose inputs differ in channels: both inputs are s1
    input_res: int  # spatial size of s1 (and of the preprocessed inputs)

    @property
    def module_shape(self) -> tuple:
        """What the cell's modules depend on (``s1_twice`` only changes what is fed to them)."""
        return self.c_prev_prev, self.c_prev, self.c, self.reduction, self.reduction_prev, self.input_res

    @property
    def output_res(self) -> int:
        return (self.input_res + 1) // 2 if self.reduction else self.input_res


def stem_resolutions(input_size: int, stem_stride: int) -> tuple[int, int]:
    """Spatial sizes after stem0 and stem1 (3x3 convs, padding 1)."""
    half = lambda r: (r + 1) // 2  # noqa: E731
    r0 = half(half(input_size)) if stem_stride == 2 else input_size
    return r0, half(r0)


def cell_specs(layout: Sequence[bool], C: int, input_size: int = 224, stem_stride: int = 2) -> list[CellSpec]:
    """The spec of every cell of ``layout`` (True = reduction) for width ``C``, derived from its actual inputs."""
    r0, r1 = stem_resolutions(input_size, stem_stride)
    states = [(C, r0), (C, r1)]  # (channels, resolution) of stem0, stem1
    specs, c_curr = [], C
    for reduction in layout:
        (ch0, res0), (ch1, res1) = states[-2], states[-1]
        if reduction:
            c_curr *= 2
        twice = reduction and ch0 != ch1
        if twice:
            ch0, res0 = ch1, res1
        spec = CellSpec(ch0, ch1, c_curr, reduction, res0 != res1, twice, res1)
        if spec.reduction_prev and res0 != 2 * res1:
            raise ValueError(f"a FactorizedReduce cannot match cell inputs of {res0} and {res1} pixels")
        specs.append(spec)
        states.append((4 * c_curr, spec.output_res))
    return specs


# -- modules --------------------------------------------------------------------------------------------------------
def make_op(op: int, C: int, stride: int) -> nn.Module:
    """Primitive ``op`` on C channels; pools are followed by an affine BN (the ABS supernet's variant)."""
    module = OPS[PRIMITIVES[op]](C, stride, True)
    if op in (MAX_POOL, AVG_POOL):
        return nn.Sequential(module, nn.BatchNorm2d(C, affine=True))
    return module


class Cell(nn.Module):
    """One cell. In the supernet (``arch`` None) ``edges[e]`` is a ModuleList of the 8 primitives indexed by op
    id; in a child network ``edges[e]`` is the one op ``arch[e]``."""

    def __init__(self, spec: CellSpec, arch: Sequence[int] | None = None) -> None:
        super().__init__()
        self.spec, self.arch = spec, None if arch is None else [int(op) for op in arch]
        if spec.reduction_prev:
            self.preprocess0 = FactorizedReduce(spec.c_prev_prev, spec.c)
        else:
            self.preprocess0 = ReLUConvBN(spec.c_prev_prev, spec.c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(spec.c_prev, spec.c, 1, 1, 0)
        edges = []
        for e in range(NUM_EDGES):
            stride = 2 if spec.reduction and edge_endpoints(e)[1] < 2 else 1
            if self.arch is None:
                edges.append(nn.ModuleList(make_op(op, spec.c, stride) for op in range(len(PRIMITIVES))))
            else:
                edges.append(make_op(self.arch[e], spec.c, stride))
        self.edges = nn.ModuleList(edges)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        if self.spec.s1_twice:
            s0 = s1
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(2, 2 + NUM_NODES):
            edges = [edge_index(node, k) for k in range(node)]
            live = [e for e in edges if arch[e] != NONE] or edges[:1]  # all-none node: one Zero for the shape
            states.append(sum(self.op(e, arch[e])(states[edge_endpoints(e)[1]]) for e in live))
        return torch.cat(states[2:], dim=1)

    def op(self, e: int, op: int) -> nn.Module:
        """The module of op ``op`` on edge ``e``."""
        if self.arch is None:
            return self.edges[e][op]
        if op != self.arch[e]:
            raise ValueError(f"edge {e} of this child network is {PRIMITIVES[self.arch[e]]}, not {PRIMITIVES[op]}")
        return self.edges[e]


class DartsNet(nn.Module):
    """Stems, cells of ``layout``, global pool, linear: the supernet (``arch`` None, all primitives on every edge)
    or the child network of one architecture (``arch``, the same 14 op ids in every cell)."""

    def __init__(self, C: int, num_classes: int, layout: Sequence[bool], arch: Sequence[int] | None = None,
                 input_size: int = 224, stem_stride: int = 2) -> None:
        super().__init__()
        self.C, self.input_size, self.stem_stride = C, input_size, stem_stride
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, C // 2, 3, stride=stem_stride, padding=1, bias=False), nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=stem_stride, padding=1, bias=False), nn.BatchNorm2d(C))
        self.stem1 = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(C))
        specs = cell_specs(layout, C, input_size, stem_stride)
        self.cells = nn.ModuleList(Cell(spec, arch) for spec in specs)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * specs[-1].c, num_classes)
        init_constructor(self)

    @property
    def layout(self) -> tuple[bool, ...]:
        return tuple(cell.spec.reduction for cell in self.cells)

    @property
    def num_instances(self) -> int:
        return len(self.cells)

    def run(self, x: torch.Tensor, cell_archs: Sequence[Sequence[int]]) -> torch.Tensor:
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        for cell, arch in zip(self.cells, cell_archs):
            s0, s1 = s1, cell(s0, s1, arch)
        return self.classifier(self.global_pooling(s1).flatten(1))

    # -- the angle's weight protocol (the original's DARTS/shrinking/angle.py) -----------------------------------------
    def fixed_weights(self) -> list[torch.Tensor]:
        """stem0's two convs, stem1's conv, per cell the preprocess0 then preprocess1 convs, the classifier weight."""
        weights = [self.stem0[0].weight, self.stem0[3].weight, self.stem1[1].weight]
        for cell in self.cells:
            p0 = cell.preprocess0
            weights += [p0.conv_1.weight, p0.conv_2.weight] if isinstance(p0, FactorizedReduce) else [p0.op[1].weight]
            weights.append(cell.preprocess1.op[1].weight)
        return weights + [self.classifier.weight]

    def choice_weights(self, site: int, op: int, instance: int = 0) -> list[torch.Tensor]:
        """Weights of op ``op`` on edge ``site`` of cell ``instance``: sep conv its 4 convs, dil conv its 2, a pool
        the constant [C, 3, 3] kernel of 1/9 (not a parameter), skip and none nothing. A skip on a reduction edge
        (a FactorizedReduce) also contributes nothing, as in the original's angle."""
        cell = self.cells[instance]
        if op in (SEP3, SEP5, DIL3, DIL5):
            seq = cell.op(site, op).op
            return [seq[i].weight for i in ((1, 2, 5, 6) if op in (SEP3, SEP5) else (1, 2))]
        if op in (MAX_POOL, AVG_POOL):
            return [torch.full((cell.spec.c, 3, 3), 1.0 / 9.0, device=self.classifier.weight.device)]
        return []


class DartsSuperNet(DartsNet):
    """The weight-sharing supernet: all 8 primitives on every edge; :meth:`insert_cell` grows it during warm-up.

    ``forward(x, arch)``: ``arch`` is 14 op ids shared by all cells, or an array [cells, 14] of one arch per cell.
    """

    def __init__(self, C: int = 48, num_classes: int = 1000, layout: Sequence[bool] = final_layout(),
                 input_size: int = 224, stem_stride: int = 2) -> None:
        super().__init__(C, num_classes, layout, None, input_size, stem_stride)

    def forward(self, x: torch.Tensor, arch: Sequence[int] | Sequence[Sequence[int]]) -> torch.Tensor:
        archs = np.asarray(arch, dtype=np.int64)
        if archs.ndim == 1:
            archs = np.broadcast_to(archs, (len(self.cells), len(archs)))
        if archs.shape != (len(self.cells), NUM_EDGES):
            raise ValueError(f"an architecture is {NUM_EDGES} op ids (shared by all cells) or one such list per "
                             f"cell ({len(self.cells)}); got shape {archs.shape}")
        return self.run(x, archs.tolist())

    def insert_cell(self, seed: int) -> int:
        """Insert the next warm-up normal cell (:func:`next_insert_position`) and return its position.

        The new cell's convs are drawn from N(0, sqrt(2 / (k*k*C_out))) with a generator seeded by ``seed``, BN at
        gamma 1 / beta 0, so every rank builds the same cell; it lands on the device and dtype of the model.
        """
        old = self.layout
        if len(old) >= len(final_layout()):
            raise ValueError(f"the supernet already has {len(old)} cells; the warm-up ends at {len(final_layout())}")
        pos = next_insert_position(old)
        specs = cell_specs(old[:pos] + (False,) + old[pos:], self.C, self.input_size, self.stem_stride)
        kept = specs[:pos] + specs[pos + 1:]
        if [c.spec.module_shape for c in self.cells] != [s.module_shape for s in kept]:
            raise AssertionError(f"inserting a cell at {pos} would change the channels of existing cells")
        for old_cell, spec in zip(self.cells, kept):
            old_cell.spec = spec  # a reduction cell's inputs may now match: it stops taking s1 twice
        cell = Cell(specs[pos])
        init_inserted(cell, torch.Generator().manual_seed(seed))
        ref = self.classifier.weight
        self.cells.insert(pos, cell.to(device=ref.device, dtype=ref.dtype))
        return pos


class DartsChildNet(DartsNet):
    """The stand-alone network of one architecture (14 op ids, every cell alike) in the final 14-cell layout;
    its weights map 1:1 from the supernet (:func:`child_state_dict`). ``forward(x)``."""

    def __init__(self, arch: Sequence[int], C: int = 48, num_classes: int = 1000, input_size: int = 224,
                 stem_stride: int = 2) -> None:
        super().__init__(C, num_classes, final_layout(), arch, input_size, stem_stride)
        self.arch = [int(op) for op in arch]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, [self.arch] * len(self.cells))


def init_constructor(model: nn.Module) -> None:
    """Constructor init (Network_ImageNet's): convs kaiming_uniform_, BN 1/0, linear N(0, 0.01) with bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def init_inserted(cell: nn.Module, generator: torch.Generator) -> None:
    """Init of a cell inserted during warm-up: convs N(0, sqrt(2 / (k*k*C_out))), BN 1/0."""
    for m in cell.modules():
        if isinstance(m, nn.Conv2d):
            std = math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels))
            m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * std)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            m.weight.fill_(1.0)
            m.bias.zero_()


_EDGE_KEY = re.compile(r"^(cells\.\d+\.edges\.(\d+))\.(\d+)\.(.+)$")


def child_state_dict(supernet_state: Mapping[str, torch.Tensor], arch: Sequence[int]) -> dict[str, torch.Tensor]:
    """The weights of path ``arch`` (14 op ids) of a supernet state dict, named for the child :class:`DartsNet`."""
    out = {}
    for key, value in supernet_state.items():
        m = _EDGE_KEY.match(key)
        if m is None:
            out[key] = value
        elif int(m.group(3)) == int(arch[int(m.group(2))]):
            out[f"{m.group(1)}.{m.group(4)}"] = value
    return out
