"""The search-space plug-in interface.

A search space is a :class:`SearchSpace` registered under a name (:func:`anglenas.spaces.register_space`). Every
stage (ABS shrinking, the searchers, training from scratch, the shared tests) talks to a space only through this
interface, so adding a space is one new file and one registration.

Vocabulary:

- **site**: a place where an op is chosen (a layer of a chain space, an edge of a cell space).
- **op table** (:attr:`SearchSpace.op_names`): the space's named ops, in the original's order. An *op id* is a
  position in that table; negative ids count from the end as in Python (the MobileNet spaces' identity is ``-1``,
  the original's encoding, and the last entry of their table).
- **operations**: one list of op ids per site (the shrunk space; the operations file holds it).
- **architecture** (arch): one op id per site. Cell spaces whose supernet holds several cells that share one choice
  (NB201, DARTS) may also accept one arch per cell instance in :meth:`SearchSpace.supernet` forward passes.

The angle of ABS is computed by one engine (:mod:`anglenas.abs.angle`) from the supernet's weight protocol
(:class:`AngleWeights`) and two class attributes of the space: :attr:`SearchSpace.angle_paths` (the sites along
each input-to-output path of a cell; ``None`` for a chain, where every site lies on one path) and
:attr:`SearchSpace.path_breakers` (ops such as ``none`` that remove a whole path from the weight vector).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from anglenas.errors import UserError
from anglenas.flops import FlopsTable, counted_macs
from anglenas.spaces.relaxed import GroupOps, RelaxedSupernet
from anglenas.train.samplers import PathSampler, UniformPathSampler

Arch = Sequence[int]


@dataclass(frozen=True)
class ShrinkDefaults:
    """Space-specific ABS defaults (the original's ``*/shrinking/config.py``); ``max_flops`` is in real FLOPs at the
    reference size."""

    drop_rule: str  # "global" (SPOS) or "per_layer" (FairNAS, DARTS: one op per site per round)
    drops_per_round: int
    max_rounds: int
    max_flops: float | None  # None: no FLOPs filter on sampled children
    lr_horizon_epochs: int
    init: str  # "he_fanout" or "default" (PyTorch's own)
    first_stage_epochs: int = 100
    other_stage_epochs: int = 5
    lr: float = 0.25
    base_refresh_threshold: int = 50  # replace W0 once after more drops than this (0: never, as DARTS)
    warmup_epochs: float = 0  # epochs per progressive warm-up stage (DARTS: 5; needs the space's warmup_supernet)
    decay_classifier: bool = True  # weight-decay the supernet's Linear classifier (DARTS: no, as the original)
    demo: tuple[tuple[str, Any], ...] = ()  # overrides of the generic --demo preset for this space


class AngleWeights(Protocol):
    """What a supernet exposes to the angle engine.

    ``fixed_weights()``: weights every child shares, in the order of the original's vector.
    ``choice_weights(site, op, instance)``: the weights op ``op`` at ``site`` contributes in cell instance
    ``instance`` (empty for identity / skip). A tensor that is not a parameter of the model is a constant
    (pooling as a fixed 1/k^2 kernel): it has the same value in W0 and W.
    ``num_instances``: how many cells share one choice per site (1 for chain spaces).
    """

    num_instances: int

    def fixed_weights(self) -> list[torch.Tensor]: ...

    def choice_weights(self, site: int, op: int, instance: int = 0) -> list[torch.Tensor]: ...


class SearchSpace(ABC):
    """A search space: sites and their ops, models, FLOPs, samplers and the angle's weight structure.

    Instances are immutable descriptions at one size; :meth:`scaled` gives the same space at another width,
    resolution or class count; the registered instance (``get_space(name)``) is the paper-size one, in which FLOPs
    limits are expressed.
    """

    name: str
    op_names: tuple[str, ...]
    shrink: ShrinkDefaults
    published: ClassVar[Mapping[str, Arch]] = {}
    angle_paths: ClassVar[tuple[tuple[int, ...], ...] | None] = None
    path_breakers: ClassVar[tuple[int, ...]] = ()
    input_size: int
    num_classes: int
    width_mult: float = 1.0
    default_dropout: ClassVar[float] = 0.2
    """Dropout before the classifier of :meth:`network` when training from scratch does not set one."""
    search_demo: ClassVar[Mapping[str, Any]] = {}
    """Search settings that ``--demo`` sets in this space (``searching/main.py --space NAME --demo``): the sizes
    that make a searcher's CPU demo take minutes here; each searcher takes the keys its settings have."""
    search_min_flops: ClassVar[float] = 0.0
    search_max_flops: ClassVar[float] = float("inf")
    """The FLOPs window of the SPOS / FairNAS search's candidates in this space by default (real FLOPs at the
    paper's size)."""

    # -- sites and ops --------------------------------------------------------------------------------------------
    @abstractmethod
    def initial_operations(self) -> list[list[int]]:
        """The full space: the op ids allowed at each site, in the original's order."""

    @property
    def num_sites(self) -> int:
        return len(self.initial_operations())

    site_kind: ClassVar[str] = "layer"
    """What a site is called in messages ("layer", "edge")."""

    def site_name(self, site: int) -> str:
        return f"{self.site_kind} {site}"

    def op_name(self, op: int) -> str:
        return self.op_names[op]

    negative_id_names: ClassVar[tuple[str, ...]] = ()
    """Ops written with a negative id, counted from the end of the table (the MobileNet identity is -1)."""

    def op_id(self, name: str) -> int:
        """The op id of ``name`` (a :class:`UserError` listing the table otherwise)."""
        if name not in self.op_names:
            raise UserError(f"the {self.name} space has no op {name!r}; its ops are {', '.join(self.op_names)}")
        i = self.op_names.index(name)
        return i - len(self.op_names) if name in self.negative_id_names else i

    def check_operations(self, ops: Sequence[Sequence[int]]) -> list[list[int]]:
        """``ops`` as plain ints when it is a legal restriction of this space; :class:`UserError` otherwise."""
        full = self.initial_operations()
        ops = [[int(op) for op in site] for site in ops]
        if len(ops) != len(full):
            raise UserError(f"the {self.name} space has {len(full)} {self.site_kind}s but the operations list has "
                            f"{len(ops)}")
        for i, (site, allowed) in enumerate(zip(ops, full)):
            if not site:
                raise UserError(f"{self.site_name(i)} of the operations list is empty; every site needs an op")
            bad = [op for op in site if op not in allowed]
            if bad:
                raise UserError(f"{self.site_name(i)} has op(s) {bad} not allowed there; allowed: {allowed}")
            if len(set(site)) != len(site):
                raise UserError(f"{self.site_name(i)} lists an op twice: {site}")
        return ops

    def check_arch(self, arch: Arch) -> list[int]:
        """``arch`` as plain ints when it is an architecture of this space; :class:`UserError` otherwise."""
        full = self.initial_operations()
        arch = [int(op) for op in arch]
        if len(arch) != len(full):
            raise UserError(f"architecture has {len(arch)} op ids but the {self.name} space has {len(full)} "
                            f"{self.site_kind}s; give one op per {self.site_kind}")
        for i, (op, allowed) in enumerate(zip(arch, full)):
            if op not in allowed:
                raise UserError(f"{self.site_name(i)}: op {op} is not allowed there; allowed: "
                                + ", ".join(f"{a} ({self.op_name(a)})" for a in allowed))
        return arch

    def format_arch(self, arch: Any) -> str:
        """``arch`` as text: its op ids separated by spaces (what ``--arch`` reads back)."""
        return " ".join(str(int(op)) for op in arch)

    def arch_to_json(self, arch: Any) -> Any:
        """``arch`` as a JSON value (:meth:`arch_from_json` reads it back): its op ids."""
        return [int(op) for op in arch]

    def arch_from_json(self, value: Any) -> Any:
        return [int(op) for op in value]

    def read_arch_text(self, text: str) -> Any | None:
        """An architecture written in a notation of this space's own (NB201's arch string), or None."""
        return None

    def read_arch_file(self, path) -> Any | None:
        """An architecture from a file of a format this space owns (e.g. a DARTS ``genotype.json``), or None when
        the file is not of that format. Search results are read by :mod:`anglenas.archs` for every space."""
        return None

    # -- sizes ----------------------------------------------------------------------------------------------------
    @abstractmethod
    def scaled(self, width_mult: float = 1.0, input_size: int | None = None, num_classes: int | None = None,
               stem_stride: int | None = None, depth: int | None = None) -> "SearchSpace":
        """The same space at another channel width, input resolution, class count, stem stride (1 is the
        small-input variant, e.g. for 32x32 images) or number of cells per stage (a cell space's; None keeps
        each as it is)."""

    def _no_depth(self, depth: int | None) -> None:
        """Refuse ``depth`` in a space whose networks have a fixed number of layers."""
        if depth is not None:
            raise UserError(f"the {self.name} space has a fixed number of {self.site_kind}s; --depth sets the "
                            f"cells per stage of a cell space (nb201)")

    def width_for_channels(self, arch: Any, channels: int) -> float:
        """The width multiplier at which the network of ``arch`` has ``channels`` channels in its first cells
        (``--init_channels`` of a cell space's networks)."""
        raise UserError(f"--init_channels applies to cell spaces (darts, nb201); the {self.name} space's width is "
                        f"--width_mult")

    # -- models ---------------------------------------------------------------------------------------------------
    @abstractmethod
    def supernet(self) -> nn.Module:
        """The weight-sharing supernet: ``forward(x, arch)`` runs one path; implements :class:`AngleWeights`."""

    @abstractmethod
    def network(self, arch: Arch, dropout: float = 0.0) -> nn.Module:
        """The stand-alone network of ``arch``; its weights map 1:1 from a supernet path
        (:meth:`path_state_dict`)."""

    @abstractmethod
    def path_state_dict(self, supernet_state: Mapping[str, torch.Tensor], arch: Arch) -> dict[str, torch.Tensor]:
        """The weights of path ``arch`` of a supernet state dict, named for :meth:`network`."""

    @property
    def has_relaxed_supernet(self) -> bool:
        """Whether this space builds a relaxed supernet (searchers that need one can search it)."""
        return type(self).relaxed_supernet is not SearchSpace.relaxed_supernet

    def relaxed_supernet(self, ops: Sequence[Sequence[int]] | GroupOps, *, channels: int | None = None,
                         depth: int | None = None, skip_dropout: bool = False) -> RelaxedSupernet:
        """The relaxed supernet over ``ops`` (per-site op ids, or per group: :mod:`anglenas.spaces.relaxed`) at this
        instance's size. ``channels`` and ``depth`` set a cell space's width and number of cells (None: the
        space's own search size); ``skip_dropout`` puts a dropout after every skip candidate (PDARTS)."""
        raise UserError(f"the {self.name} space has no relaxed supernet; use a searcher that trains a single-path "
                        f"supernet (spos, fairnas, rsps)")

    # -- FLOPs ----------------------------------------------------------------------------------------------------
    @abstractmethod
    def flops_table(self) -> FlopsTable:
        """FLOPs / params of the fixed parts and of every (site, op) at this instance's size."""

    def counted_flops(self, arch: Arch) -> int:
        """FLOPs of :meth:`network` of ``arch`` counted by running it on the meta device under torch's counter,
        in the original's convention: multiply-accumulates, ``(2 * in - 1) * out`` for a Linear."""
        return counted_macs(lambda: self.network(arch), self.input_size)

    def arch_cost(self, arch: Any) -> tuple[int, int]:
        """(FLOPs, params) of the network of ``arch`` at this size (from :meth:`flops_table`)."""
        table = self.flops_table()
        return table.arch_flops(arch), table.arch_params(arch)

    # -- sampling -------------------------------------------------------------------------------------------------
    def train_sampler(self, ops: Sequence[Sequence[int]], seed: int) -> PathSampler:
        """Single-path uniform sampling over ``ops`` (each site uniform over its list)."""
        return UniformPathSampler(ops, seed)

    def draw_children(self, ops: Sequence[Sequence[int]], rng: np.random.Generator, site: int, op: int,
                      n: int) -> np.ndarray:
        """``n`` random children [n, sites] holding ``op`` at ``site``, for ABS scoring (the original's
        ``get_random_extend``); legality (FLOPs, no repeats) is checked by the caller. Default: every other site uniform
        over its list."""
        counts = np.array([len(s) for s in ops])
        width = counts.max()
        table = np.array([list(s) + [s[0]] * (width - len(s)) for s in ops], dtype=np.int64)
        picks = (rng.random((n, len(ops))) * counts).astype(np.int64)
        archs = table[np.arange(len(ops)), picks]
        archs[:, site] = op
        return archs

    def random_arch(self, ops: Sequence[Sequence[int]], rng: np.random.Generator) -> list[int]:
        """One architecture uniform over ``ops`` (the evolutionary search's random draw)."""
        return [int(s[rng.integers(len(s))]) for s in ops]

    # -- helpers --------------------------------------------------------------------------------------------------
    def size_of(self, ops: Sequence[Sequence[int]]) -> int:
        return math.prod(len(s) for s in ops)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor``, never dropping more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded
