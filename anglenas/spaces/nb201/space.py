"""The NAS-Bench-201 cell space as the registered search space "nb201".

Sites are the 6 edges of the 4-node cell (``edge 1<-0``, ``edge 2<-0``, ``edge 2<-1``, ``edge 3<-0``,
``edge 3<-1``, ``edge 3<-2``), each choosing one of 5 ops (:data:`~anglenas.spaces.nb201.cells.OPS`; builders in
:data:`~anglenas.spaces.nb201.supernet.OP_BUILDERS`). The supernet holds ``3 * cells_per_stage`` search cells; a
benchmark architecture puts the same cell in all of them, the training sampler (:class:`CellPathSampler`) draws a
cell per search cell. For the angle every search cell is an instance of the 6 sites; the 4 input-to-output paths of a
cell are :attr:`NB201Space.angle_paths` and ``none`` removes a path from the vector (the original's
``get_arch_angle``).

Sizes: ``width_mult`` scales NB201's 16 first-stage channels (``channels = 16 * width_mult``), ``input_size`` is
the image side (32 for CIFAR, 16 for ImageNet16-120), ``cells_per_stage`` is NB201's N (5). ``stem_stride`` is the
stride of the stem conv3x3; NB201's networks keep the full resolution there, so 1 is its only value.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from anglenas.errors import UserError
from anglenas.flops import FlopsTable, chain_flops
from anglenas.spaces.base import Arch, SearchSpace, ShrinkDefaults
from anglenas.spaces.nb201.cells import EDGES, NONE, NUM_EDGES, OPS, PATHS, Cell, parse, path_edges, to_str
from anglenas.spaces.nb201.network import NB201Network, path_state_dict
from anglenas.spaces.nb201.relaxed import NB201RelaxedSupernet
from anglenas.spaces.nb201.supernet import NB201SuperNet, ResidualReduction, make_op
from anglenas.spaces.registry import register_space
from anglenas.spaces.relaxed import GroupOps, check_group_ops

BASE_CHANNELS = 16


class CellPathSampler:
    """SPOS sampling of the NB201 supernet (the original's ``TinyNetworkSPOS.forward_urs`` / ``forward_dropnode``): each
    search cell draws its own cell; per node, one op per incoming edge uniformly from that edge's list, redrawn while
    all of the node's inputs are ``none``. The path of a step depends on (seed, step) only."""

    def __init__(self, num_cells: int, seed: int, ops: Sequence[Sequence[int]] | None = None) -> None:
        self.num_cells, self.seed = num_cells, seed
        self.ops = [list(e) for e in ops] if ops is not None else [list(range(len(OPS)))] * NUM_EDGES
        self._nodes = [[e for e, (i, _) in enumerate(EDGES) if i == node] for node in range(1, 4)]

    def sample_cell(self, rng: np.random.Generator) -> Cell:
        cell = [NONE] * NUM_EDGES
        for edges in self._nodes:
            can_live = any(op != NONE for e in edges for op in self.ops[e])
            while True:
                picks = [self.ops[e][rng.integers(len(self.ops[e]))] for e in edges]
                if not can_live or any(p != NONE for p in picks):
                    break
            for e, p in zip(edges, picks):
                cell[e] = int(p)
        return tuple(cell)

    def paths(self, step: int) -> list[list[Cell]]:
        rng = np.random.default_rng([self.seed, step])
        return [[self.sample_cell(rng) for _ in range(self.num_cells)]]


@dataclass(frozen=True)
class NB201Space(SearchSpace):
    """NAS-Bench-201: 6 edges x 5 ops, 15,625 cells; the macro of
    :class:`~anglenas.spaces.nb201.supernet.NB201SuperNet`.

    ABS on it (the original's ``dropnode_by_angle.py``) is one round that drops 20 of the 30 operators by the global
    rule; an operator's children are uniform over the other edges (the original averages over all cells holding it),
    which is :meth:`SearchSpace.draw_children`'s default.
    """

    name: str = "nb201"
    cells_per_stage: int = 5
    input_size: int = 32
    num_classes: int = 10
    stem_stride: int = 1
    width_mult: float = 1.0
    shrink: ShrinkDefaults = ShrinkDefaults(drop_rule="global", drops_per_round=20, max_rounds=1, max_flops=None,
                                            lr_horizon_epochs=250, init="default", first_stage_epochs=100,
                                            lr=0.025)
    op_names = OPS
    angle_paths = tuple(path_edges(p) for p in PATHS)
    path_breakers = (NONE,)
    published = {"NB201_BEST_CIFAR10": [3, 3, 3, 1, 3, 2],  # NB201 index 6111, 94.37%
                 "NB201_BEST_CIFAR100": [3, 3, 3, 1, 3, 3],  # index 9930, 73.51%
                 "NB201_BEST_IMAGENET16": [2, 2, 3, 1, 3, 3]}  # index 857, 47.31%
    default_dropout: ClassVar[float] = 0.0
    """NB201's networks have no dropout."""
    search_demo: ClassVar[Mapping[str, Any]] = {"width_mult": 0.5, "init_channels": 8, "depth": 1, "stem_stride": 1}
    """``--space nb201 --demo``: C = 8 channels; searchers with a cell count (``--layers``) use 1 cell per stage."""

    def __post_init__(self) -> None:
        if self.stem_stride != 1:
            raise UserError(f"the nb201 space has a stride-1 stem (NB201's networks); got stem_stride "
                            f"{self.stem_stride}: pass --stem_stride 1")
        if self.channels < 1 or self.cells_per_stage < 1:
            raise UserError(f"the nb201 space needs at least 1 channel and 1 cell per stage; got width "
                            f"{self.width_mult} ({self.channels} channels), {self.cells_per_stage} cells per stage")

    @property
    def channels(self) -> int:
        """Channels of the first stage (NB201: 16); the stages have C, 2C, 4C."""
        return round(BASE_CHANNELS * self.width_mult)

    def width_for_channels(self, arch: Arch, channels: int) -> float:
        """The width at which the network has ``channels`` in its first stage (NB201: 16 at width 1)."""
        return channels / BASE_CHANNELS

    @property
    def num_cells(self) -> int:
        return 3 * self.cells_per_stage

    # -- sites and ops --------------------------------------------------------------------------------------------
    def initial_operations(self) -> list[list[int]]:
        return [list(range(len(OPS))) for _ in range(NUM_EDGES)]

    def site_name(self, site: int) -> str:
        to_node, from_node = EDGES[site]
        return f"edge {to_node}<-{from_node}"

    def format_arch(self, arch: Arch) -> str:
        """NB201's arch string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
        return to_str(tuple(int(op) for op in arch))

    def read_arch_text(self, text: str) -> list[int] | None:
        """The cell of an NB201 arch string (a malformed one is a :class:`UserError`), None for other text."""
        return list(parse(text)) if text.strip().startswith("|") else None

    # -- sizes ----------------------------------------------------------------------------------------------------
    def scaled(self, width_mult: float = 1.0, input_size: int | None = None, num_classes: int | None = None,
               stem_stride: int | None = None, depth: int | None = None) -> "NB201Space":
        """``depth``: search cells per stage (NB201's N)."""
        return dataclasses.replace(self, width_mult=width_mult, input_size=input_size or self.input_size,
                                   num_classes=num_classes or self.num_classes,
                                   stem_stride=stem_stride or self.stem_stride,
                                   cells_per_stage=depth or self.cells_per_stage)

    def sized(self, channels: int, cells_per_stage: int, input_size: int, num_classes: int) -> "NB201Space":
        """This space with ``channels`` first-stage channels and ``cells_per_stage`` search cells per stage."""
        return self.scaled(channels / BASE_CHANNELS, input_size, num_classes, depth=cells_per_stage)

    # -- models ---------------------------------------------------------------------------------------------------
    def supernet(self) -> NB201SuperNet:
        return NB201SuperNet(self.num_classes, self.channels, self.cells_per_stage)

    def network(self, arch: Arch | Sequence[Arch], dropout: float = 0.0) -> nn.Module:
        """NB201's stand-alone network of one cell (or a cell per search cell); it has no dropout."""
        if dropout:
            raise UserError(f"NB201's networks have no dropout; got dropout {dropout} (use 0)")
        return NB201Network(arch, self.num_classes, self.channels, self.cells_per_stage)

    def path_state_dict(self, supernet_state: Mapping[str, torch.Tensor], arch: Arch | Sequence[Arch]
                        ) -> dict[str, torch.Tensor]:
        return path_state_dict(supernet_state, arch)

    def relaxed_supernet(self, ops: Sequence[Sequence[int]] | GroupOps, *, channels: int | None = None,
                         depth: int | None = None, skip_dropout: bool = False) -> NB201RelaxedSupernet:
        """NB201's DARTS network over ``ops`` (op ids per edge; an empty list leaves the edge out) with ``channels``
        C (default: this size's) and ``depth`` cells per stage (default: this space's N)
        (:mod:`anglenas.spaces.nb201.relaxed`)."""
        site_ops = check_group_ops(ops, NB201RelaxedSupernet.groups)["cell"]
        self.check_operations([site or [NONE] for site in site_ops])  # an empty edge is allowed here
        for name, value in (("channels", channels), ("depth", depth)):
            if value is not None and value < 1:
                raise UserError(f"the nb201 relaxed supernet needs {name} >= 1, got {value}")
        return NB201RelaxedSupernet(site_ops, self.num_classes, channels or self.channels,
                                    depth or self.cells_per_stage, skip_dropout)

    # -- FLOPs ----------------------------------------------------------------------------------------------------
    def flops_table(self) -> FlopsTable:
        """Stem in ``pre``; the two reduction blocks, the last BN and the classifier in ``post``; per edge and op
        the cost of the stand-alone network's op (affine BN) summed over the search cells. Pooling, skip and
        none cost no FLOPs (only convs and linears count)."""
        with torch.device("meta"):
            c, res = self.channels, self.input_size
            pre, pre_params = chain_flops(nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False),
                                                        nn.BatchNorm2d(c)), res)
            post = post_params = 0
            per_op = np.zeros((2, len(OPS)), dtype=np.int64)  # (flops, params) summed over the search cells
            for stage in range(3):
                if stage:
                    flops, params = chain_flops(ResidualReduction(c, 2 * c), res)
                    post, post_params = post + flops, post_params + params
                    res, c = (res - 1) // 2 + 1, 2 * c
                for op in range(len(OPS)):
                    per_op[:, op] += self.cells_per_stage * np.array(chain_flops(make_op(op, c, affine=True), res))
            flops, params = chain_flops(nn.Sequential(nn.BatchNorm2d(c), nn.Linear(c, self.num_classes)), 1)
        layers = [per_op[0].tolist() for _ in range(NUM_EDGES)]
        layer_params = [per_op[1].tolist() for _ in range(NUM_EDGES)]
        return FlopsTable(self.name, self.input_size, self.width_mult, self.num_classes, self.stem_stride, pre,
                          post + flops, layers, pre_params, post_params + params, layer_params)

    # -- sampling -------------------------------------------------------------------------------------------------
    def train_sampler(self, ops: Sequence[Sequence[int]], seed: int) -> CellPathSampler:
        return CellPathSampler(self.num_cells, seed, ops)


NB201_SPACE = NB201Space()
"""NB201 at its own size: C=16, N=5, 32x32 CIFAR-10."""


@register_space
def nb201() -> NB201Space:
    return NB201_SPACE


__all__ = ["CellPathSampler", "NB201Space", "NB201_SPACE"]
