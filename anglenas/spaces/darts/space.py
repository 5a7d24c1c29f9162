"""The DARTS cell space of ABS (the original's ``DARTS/shrinking``): 14 edges, the 8 upstream primitives on each.

A site is an edge of the cell (edge of node j <- state k = k + offset(j), offset = 0, 2, 5, 9); one op choice per
edge is shared by all 14 cells of the ImageNet supernet (:mod:`anglenas.spaces.darts.supernet`), normal and
reduction alike. Sampled architectures obey the 2-input rule of :func:`check_cand` (each node keeps exactly 2
non-``none`` inputs). The angle follows the 16 input-to-output paths of a cell (:data:`ANGLE_PATHS`); ``none``
removes a path. Trained networks of the found cells are genotypes (:mod:`anglenas.spaces.darts.genotypes`):
:meth:`DartsSpace.network` builds ``NetworkImageNet`` from one (``NetworkCIFAR`` at stem stride 1).

FLOPs convention: the original's thop (multiply-accumulates of Conv2d, ``(2 * in - 1) * out`` for the Linear;
BN, pooling, ReLU and adds count 0), batch 1, eval mode (the auxiliary head is not counted). See docs/darts-space.md.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from anglenas.errors import UserError
from anglenas.flops import FlopsTable, counted_macs
from anglenas.spaces.base import Arch, SearchSpace, ShrinkDefaults
from anglenas.spaces.darts.genotypes import (
    DARTS_ABS,
    PDARTS_ABS,
    Genotype,
    genotype_from_json,
    genotype_from_string,
    parse_genotype,
    validate_genotype,
)
from anglenas.spaces.darts.model_eval import NetworkCIFAR, NetworkImageNet
from anglenas.spaces.darts.model_search import SEARCH_CHANNELS, SEARCH_LAYERS, SearchNetwork
from anglenas.spaces.darts.ops import PRIMITIVES
from anglenas.spaces.darts.supernet import (
    AVG_POOL,
    DIL3,
    DIL5,
    MAX_POOL,
    NONE,
    NUM_EDGES,
    SEP3,
    SEP5,
    SKIP,
    START_LAYOUT,
    DartsChildNet,
    DartsSuperNet,
    cell_specs,
    child_state_dict,
    edge_endpoints,
    edge_index,
    final_layout,
    stem_resolutions,
    warmup_schedule,
)
from anglenas.spaces.registry import register_space
from anglenas.spaces.relaxed import GroupOps, check_group_ops

REFERENCE_C = 48
"""Channels of the first cells of the ABS shrinking supernet (and of its 14-op child networks) at width 1."""
GENOTYPE_C = 45
"""Channels of the first cells of a genotype's ImageNet network at width 1: the ABS paper's DARTS_ABS and PDARTS_ABS
models (547.6M and 570.1M FLOPs), as the original's training script passes ``--init_channels 45``."""
LAYERS = 14
PATH_NODES = ((0, 2, 3, 4, 5), (0, 2, 3, 5), (0, 2, 4, 5), (0, 2, 5), (0, 3, 4, 5), (0, 3, 5), (0, 4, 5), (0, 5),
              (1, 2, 3, 4, 5), (1, 2, 3, 5), (1, 2, 4, 5), (1, 2, 5), (1, 3, 4, 5), (1, 3, 5), (1, 4, 5), (1, 5))
"""The original's 16 paths (config ``paths``): states from an input to node 5 through increasing nodes."""
ANGLE_PATHS = tuple(tuple(edge_index(j, k) for k, j in zip(p, p[1:])) for p in PATH_NODES)
"""The edges along each path, in path order."""


# -- sampling ------------------------------------------------------------------------------------------------------
def _pick_ranks(mask: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per row, a uniform random subset of ``counts[row]`` of the True entries of ``mask`` (as a boolean mask)."""
    keys = np.where(mask, rng.random(mask.shape), np.inf)
    ranks = keys.argsort(axis=1).argsort(axis=1)
    return mask & (ranks < counts[:, None])


def check_cand(archs: np.ndarray, ops: Sequence[Sequence[int]], rng: np.random.Generator) -> np.ndarray:
    """The 2-input rule (the original's ``check_cand``), vectorised over rows of ``archs`` [N, 14], in place.

    Node j (0..3) has j + 2 incoming edges and must keep exactly 2 non-``none`` ones: with fewer than j ``none``
    edges, a uniform random subset of the others is set to ``none`` (even where ``none`` is no longer in the
    edge's list, as in the original); with more, a uniform subset of the ``none`` edges that have another op gets a
    uniform non-``none`` op of its list.
    """
    for j in range(4):
        edges = [edge_index(j + 2, k) for k in range(j + 2)]
        sub = archs[:, edges]
        is_none = sub == NONE
        n_none = is_none.sum(axis=1)
        to_none = _pick_ranks(~is_none, np.maximum(j - n_none, 0), rng)
        alternatives = [[op for op in ops[e] if op != NONE] for e in edges]
        replaceable = is_none & np.array([bool(a) for a in alternatives])[None, :]
        to_op = _pick_ranks(replaceable, np.maximum(n_none - j, 0), rng)
        picks = rng.random(sub.shape)
        for col, alt in enumerate(alternatives):
            if alt:
                new = np.asarray(alt)[(picks[:, col] * len(alt)).astype(np.int64)]
                sub[:, col] = np.where(to_op[:, col], new, sub[:, col])
        sub[to_none] = NONE
        archs[:, edges] = sub
    return archs


def uniform_archs(ops: Sequence[Sequence[int]], rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 14]: each edge uniform over its list (before the 2-input rule)."""
    counts = np.array([len(s) for s in ops])
    table = np.array([list(s) + [s[0]] * (counts.max() - len(s)) for s in ops], dtype=np.int64)
    picks = (rng.random((n, len(ops))) * counts).astype(np.int64)
    return table[np.arange(len(ops)), picks]


class DartsPathSampler:
    """Supernet training paths: a uniform op per edge (shared by all cells), then the 2-input rule; a function of
    (seed, step) only, so every rank samples the same path."""

    def __init__(self, ops: Sequence[Sequence[int]], seed: int) -> None:
        self.ops, self.seed = [list(s) for s in ops], seed

    def paths(self, step: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, step])
        return [check_cand(uniform_archs(self.ops, rng, 1), self.ops, rng)[0].tolist()]


# -- FLOPs in closed form (thop's rules) -------------------------------------------------------------------------
def _op_cost(op: int, C: int, stride: int, res_in: int) -> tuple[int, int]:
    """(FLOPs, params) of primitive ``op`` on C channels (pools with their BN)."""
    r = (res_in + stride - 1) // stride
    if op in (SEP3, SEP5, DIL3, DIL5):
        k = 3 if op in (SEP3, DIL3) else 5
        halves = 2 if op in (SEP3, SEP5) else 1  # a sep conv is two (dw k x k, pw 1x1, BN) in a row
        return halves * (C * k * k + C * C) * r * r, halves * (C * k * k + C * C + 2 * C)
    if op == SKIP and stride == 2:  # FactorizedReduce(C, C): two 1x1 s2 convs to C // 2 and C - C // 2
        return C * C * r * r, C * C + 2 * C
    if op in (MAX_POOL, AVG_POOL):
        return 0, 2 * C
    return 0, 0


def _fixed_cost(C: int, num_classes: int, input_size: int, stem_stride: int) -> tuple[int, int, int, int]:
    """(pre FLOPs, pre params, post FLOPs, post params): stems and every cell's preprocessing; the classifier."""
    r0, r1 = stem_resolutions(input_size, stem_stride)
    ra = (input_size + stem_stride - 1) // stem_stride
    half = C // 2
    flops = 3 * half * 9 * ra * ra + half * C * 9 * r0 * r0 + C * C * 9 * r1 * r1
    params = 3 * half * 9 + 2 * half + half * C * 9 + 2 * C + C * C * 9 + 2 * C
    specs = cell_specs(final_layout(LAYERS), C, input_size, stem_stride)
    for s in specs:
        r = s.input_res  # the preprocessed inputs are at s1's size (FactorizedReduce halves s0)
        flops += (s.c_prev_prev + s.c_prev) * s.c * r * r
        params += (s.c_prev_prev + s.c_prev) * s.c + 4 * s.c
    features = 4 * specs[-1].c
    return flops, params, (2 * features - 1) * num_classes, features * num_classes + num_classes


# -- the space ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DartsSpace(SearchSpace):
    """The DARTS space of ABS at one width (C = 48 x width_mult), input size, class count and stem stride.

    Stem stride 2 is the ImageNet stem (224 -> 56 -> 28); stem stride 1 keeps the same modules with stride-1
    stem0 convs (32 -> 32 -> 16), so a CPU demo on 32x32 images runs the same supernet.
    """

    name: str = "darts"
    width_mult: float = 1.0
    input_size: int = 224
    num_classes: int = 1000
    stem_stride: int = 2

    op_names: ClassVar[tuple[str, ...]] = tuple(PRIMITIVES)
    site_kind: ClassVar[str] = "edge"
    shrink: ClassVar[ShrinkDefaults] = ShrinkDefaults(
        drop_rule="per_layer", drops_per_round=NUM_EDGES, max_rounds=len(PRIMITIVES), max_flops=None,
        lr_horizon_epochs=400, init="default", first_stage_epochs=150, other_stage_epochs=20, lr=0.2,
        base_refresh_threshold=0, warmup_epochs=5, decay_classifier=False,
        demo=(("width_mult", 1 / 6), ("batch_size", 32), ("warmup_epochs", 0.05), ("first_stage_epochs", 1),
              ("other_stage_epochs", 0), ("sample_num", 5), ("lr_horizon_epochs", 4), ("stem_stride", 1)))
    """The original's ``DARTS/shrinking/config.py``: 1 op dropped per edge per round (8 -> 2 ops after 6 rounds, 2^14
    archs), no FLOPs filter, lr 0.2 over a 400-epoch horizon, 150 epochs before round 0 and 20 before each later one,
    after the 55-epoch warm-up (:meth:`warmup_supernet`). ``init="default"``: the supernet initialises itself as the
    original does. ``decay_classifier=False``: the original's weight-decay filter names ``classifier.0``, which misses
    this supernet's ``classifier.weight`` / ``.bias``, so its classifier is never decayed."""
    warmup_stages: ClassVar[int] = len(warmup_schedule())
    """The 11 warm-up stages (the original's ``get_warmup_model``;
    :func:`~anglenas.spaces.darts.supernet.warmup_schedule`), each ``shrink.warmup_epochs`` long with a fresh optimiser
    and its own linear schedule, each followed by the insertion of a cell; W0 is taken after the last stage and never
    replaced."""
    published: ClassVar[Mapping[str, Genotype]] = {"DARTS_ABS": DARTS_ABS, "PDARTS_ABS": PDARTS_ABS}
    """The ABS paper's cells (genotypes, not 14-op architectures): build them with :meth:`network`."""
    angle_paths: ClassVar[tuple[tuple[int, ...], ...]] = ANGLE_PATHS
    path_breakers: ClassVar[tuple[int, ...]] = (NONE,)
    default_dropout: ClassVar[float] = 0.0
    """DARTS networks have no dropout before the classifier (they regularise with drop-path)."""
    search_demo: ClassVar[Mapping[str, float]] = {"init_channels": 4, "layers": 3, "width_mult": 1 / 6}
    """``--space darts --demo``: the cell searchers' network at C=4 with 3 cells (``--layers``, their name for it;
    PDARTS: 3 cells in its first stage), the supernet searchers' 14 cells at width 1/6 (C=8, as the shrinking
    demo's): the supernet has a fixed depth."""

    def __post_init__(self) -> None:
        if self.width_mult <= 0:
            raise UserError(f"width multiplier must be positive, got {self.width_mult}")
        if self.stem_stride not in (1, 2):
            raise UserError(f"stem stride must be 1 (small inputs) or 2, got {self.stem_stride}")
        multiple = 32 if self.stem_stride == 2 else 8  # FactorizedReduce halves even sizes only
        if self.input_size % multiple:
            raise UserError(f"the DARTS networks need an input size divisible by {multiple} at stem stride "
                            f"{self.stem_stride}; got {self.input_size} (use e.g. {224 if multiple == 32 else 32})")
        if self.init_channels < 2:
            raise UserError(f"width {self.width_mult} gives C = {self.init_channels} channels; use a larger width")

    @property
    def init_channels(self) -> int:
        """Channels of the first cells (48 at the paper's size, 45 for the scaled-down networks)."""
        return round(REFERENCE_C * self.width_mult)

    def initial_operations(self) -> list[list[int]]:
        return [list(range(len(PRIMITIVES))) for _ in range(NUM_EDGES)]

    def site_name(self, site: int) -> str:
        node, state = edge_endpoints(site)
        return f"edge {site} (node {node} <- {state})"

    def check_arch(self, arch: Arch | Genotype) -> list[int] | Genotype:
        """A 14-op architecture as plain ints, or a validated genotype; :class:`UserError` otherwise."""
        if isinstance(arch, Genotype):
            return validate_genotype(arch)
        return super().check_arch(arch)

    def read_arch_file(self, path) -> Genotype | None:
        """A genotype from a ``genotype.json`` (keys normal, reduce, ...) or a ``Genotype(...)`` text file; None
        for any other file."""
        import json
        from pathlib import Path

        with open(path, "rb") as f:
            head = f.read(16).lstrip()
        if not head.startswith((b"{", b"Genotype(")):
            return None
        text = Path(path).read_text(errors="replace")
        if head.startswith(b"Genotype("):
            return genotype_from_string(text, str(path))
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            return None
        if isinstance(doc, dict) and "normal" in doc and "reduce" in doc:
            return genotype_from_json(text, str(path))
        return None

    def format_arch(self, arch: Arch | Genotype) -> str:
        """A genotype as ``Genotype(...)`` (what upstream logs print and ``--arch`` reads), 14 op ids as ids."""
        return str(arch) if isinstance(arch, Genotype) else super().format_arch(arch)

    def arch_to_json(self, arch: Arch | Genotype) -> object:
        """A genotype as the mapping of :func:`~anglenas.spaces.darts.genotypes.genotype_to_json`, 14 op ids as a
        list."""
        return validate_genotype(arch)._asdict() if isinstance(arch, Genotype) else super().arch_to_json(arch)

    def arch_from_json(self, value: object) -> Arch | Genotype:
        if isinstance(value, dict):
            return validate_genotype(Genotype(**{f: value[f] for f in Genotype._fields}))
        return super().arch_from_json(value)

    def arch_cost(self, arch: Arch | Genotype) -> tuple[int, int]:
        """A genotype's counted cost (:meth:`genotype_cost`), a 14-op child's from the FLOPs table."""
        return self.genotype_cost(arch) if isinstance(arch, Genotype) else super().arch_cost(arch)

    def scaled(self, width_mult: float = 1.0, input_size: int | None = None, num_classes: int | None = None,
               stem_stride: int | None = None, depth: int | None = None) -> "DartsSpace":
        self._no_depth(depth)
        return dataclasses.replace(self, width_mult=width_mult, input_size=input_size or self.input_size,
                                   num_classes=num_classes or self.num_classes,
                                   stem_stride=stem_stride or self.stem_stride)

    # -- models ---------------------------------------------------------------------------------------------------
    def supernet(self) -> DartsSuperNet:
        """The 14-cell supernet (the layout after warm-up)."""
        return DartsSuperNet(self.init_channels, self.num_classes, final_layout(LAYERS), self.input_size,
                             self.stem_stride)

    def warmup_supernet(self) -> DartsSuperNet:
        """The 3-cell [N, R, R] supernet the warm-up starts from; grow it with ``insert_cell`` (docs/darts-space.md)."""
        return DartsSuperNet(self.init_channels, self.num_classes, START_LAYOUT, self.input_size, self.stem_stride)

    def network(self, arch: Arch | Genotype, dropout: float = default_dropout) -> nn.Module:
        """The child network of a 14-op architecture (weights from :meth:`path_state_dict`), or the trainable
        network of a genotype: ``NetworkImageNet(C, classes, 14, auxiliary=True)`` (``NetworkCIFAR`` at stem stride
        1, whose auxiliary head needs 8x8 maps). DARTS networks have no dropout (they use drop-path)."""
        if dropout:
            raise UserError(f"the DARTS networks have no dropout (got {dropout}); set it to 0 and use drop-path")
        arch = self.check_arch(arch)
        if isinstance(arch, Genotype):
            return self._genotype_network(arch, auxiliary=True)
        return DartsChildNet(arch, self.init_channels, self.num_classes, self.input_size, self.stem_stride)

    @property
    def genotype_channels(self) -> int:
        """Channels of the first cells of a genotype's network at this width (45 at the paper's size)."""
        return round(GENOTYPE_C * self.width_mult)

    def width_for_channels(self, arch: Arch | Genotype, channels: int) -> float:
        """The width at which ``arch``'s network has ``channels`` in its first cells (C=45 genotypes, C=48 14-op
        children at width 1)."""
        return channels / (GENOTYPE_C if isinstance(arch, Genotype) else REFERENCE_C)

    def _genotype_network(self, genotype: Genotype, auxiliary: bool) -> nn.Module:
        net = NetworkImageNet if self.stem_stride == 2 else NetworkCIFAR
        return net(self.genotype_channels, self.num_classes, LAYERS, auxiliary, genotype)

    def path_state_dict(self, supernet_state: Mapping[str, torch.Tensor], arch: Arch) -> dict[str, torch.Tensor]:
        return child_state_dict(supernet_state, self.check_arch(arch))

    def relaxed_supernet(self, ops: Sequence[Sequence[int]] | GroupOps, *, channels: int | None = None,
                         depth: int | None = None, skip_dropout: bool = False) -> SearchNetwork:
        """Upstream DARTS' CIFAR search network (:class:`~anglenas.spaces.darts.model_search.SearchNetwork`, a 3x3
        stride-1 stem whatever the stem stride) over ``ops``: 14 per-edge lists for both cell kinds, or a mapping
        ``{"normal": ..., "reduce": ...}``; an empty list is a removed edge. ``channels`` default to upstream's 16
        times the width multiplier, ``depth`` to its 8 cells. ``derive()`` gives DARTS' genotype."""
        by_group = check_group_ops(ops, SearchNetwork.groups)
        return SearchNetwork(channels or max(1, round(SEARCH_CHANNELS * self.width_mult)), self.num_classes,
                             depth or SEARCH_LAYERS, by_group["normal"], skip_dropout,
                             reduce_ops=by_group["reduce"])

    # -- FLOPs ----------------------------------------------------------------------------------------------------
    @functools.cache
    def flops_table(self) -> FlopsTable:
        """Closed-form FLOPs / params per (edge, op), summed over the 14 cells (each at its width and size)."""
        pre, pre_params, post, post_params = _fixed_cost(self.init_channels, self.num_classes, self.input_size,
                                                         self.stem_stride)
        flops = np.zeros((NUM_EDGES, len(PRIMITIVES)), dtype=np.int64)
        params = np.zeros_like(flops)
        for spec in cell_specs(final_layout(LAYERS), self.init_channels, self.input_size, self.stem_stride):
            for e in range(NUM_EDGES):
                from_input = edge_endpoints(e)[1] < 2
                stride = 2 if spec.reduction and from_input else 1
                res = spec.input_res if from_input else spec.output_res
                for op in range(len(PRIMITIVES)):
                    f, p = _op_cost(op, spec.c, stride, res)
                    flops[e, op] += f
                    params[e, op] += p
        return FlopsTable(space=self.name, input_size=self.input_size, width_mult=self.width_mult,
                          num_classes=self.num_classes, stem_stride=self.stem_stride, pre=pre, post=post,
                          layers=flops.tolist(), pre_params=pre_params, post_params=post_params,
                          layer_params=params.tolist())

    def counted_flops(self, arch: Arch | Genotype) -> int:
        """FLOPs of :meth:`network` counted by torch's counter; a genotype network without its auxiliary head,
        which runs only in training (the counter would add the adds of its unused Linear)."""
        arch = self.check_arch(arch)
        if isinstance(arch, Genotype):
            return counted_macs(lambda: self._genotype_network(arch, auxiliary=False), self.input_size)
        return counted_macs(lambda: self.network(arch), self.input_size)

    def genotype_cost(self, genotype: Genotype | str) -> tuple[int, int]:
        """(FLOPs, params) of the genotype network at this size: FLOPs counted in thop's convention in eval mode
        (no auxiliary head), params without the auxiliary head (as upstream DARTS reports them)."""
        genotype = parse_genotype(genotype)
        with torch.device("meta"):
            net = self.network(genotype)
        params = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("auxiliary"))
        return self.counted_flops(genotype), params

    # -- sampling -------------------------------------------------------------------------------------------------
    def train_sampler(self, ops: Sequence[Sequence[int]], seed: int) -> DartsPathSampler:
        return DartsPathSampler(ops, seed)

    def draw_children(self, ops: Sequence[Sequence[int]], rng: np.random.Generator, site: int, op: int,
                      n: int) -> np.ndarray:
        """The original's ``get_random_extend``: a uniform op per edge, the 2-input rule, then edge ``site`` forced to
        ``op`` (which may break the rule, as in the original)."""
        archs = check_cand(uniform_archs(ops, rng, n), ops, rng)
        archs[:, site] = op
        return archs

    def random_arch(self, ops: Sequence[Sequence[int]], rng: np.random.Generator) -> list[int]:
        return check_cand(uniform_archs(ops, rng, 1), ops, rng)[0].tolist()


@register_space
def darts() -> DartsSpace:
    """The DARTS space of ABS at the paper's size (C=48, 224x224, 1000 classes)."""
    return DartsSpace()
