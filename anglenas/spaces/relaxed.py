"""The relaxed supernet of a space: one mixed op per site, architecture weights over that site's ops.

Every space builds one (:meth:`~anglenas.spaces.base.SearchSpace.relaxed_supernet`): the DARTS space the upstream
DARTS search network, NAS-Bench-201 its DARTS network, the chain spaces (MobileNet, ShuffleNetV2) the
ProxylessNAS / FBNet layer. A site may appear in several places (a cell space's cells share their choice); each
place is a :class:`MixedOp` over the same candidate ops. The sites are split into *groups* that each have their own
architecture weights (DARTS: the normal and the reduction cells; every other space: one group).

How a mixed op combines its candidates is the searcher's choice, a :class:`Mixing` set with
:meth:`RelaxedSupernet.set_mixing`:

- :class:`SoftmaxMixing` (DARTS, PDARTS): ``sum_k softmax(alpha)_k op_k(x)``;
- :class:`FixedMixing` (PertNAS): ``sum_k m_k op_k(x)`` with fixed weights, 0 for a perturbed op;
- :class:`PathMixing`: one candidate per site (a single path, e.g. the derived architecture);
- ProxylessNAS' binary gates (:mod:`anglenas.searchers.proxyless.gates`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anglenas.errors import UserError

GroupOps = Mapping[str, Sequence[Sequence[int]]]
"""The op ids of every site, per group: ``{"normal": [[0, 4], ...], "reduce": [...]}``."""


class Mixing(Protocol):
    """How every :class:`MixedOp` combines its candidates during a forward pass."""

    def begin(self, model: "RelaxedSupernet") -> None:
        """Called once at the start of every forward pass (e.g. to take the softmax of the alphas)."""

    def __call__(self, op: "MixedOp", x: torch.Tensor) -> torch.Tensor: ...


class MixedOp(nn.Module):
    """The candidates of site ``site`` of group ``group`` at one place of the network: ``candidates[k]`` is op
    ``ops[k]`` (an op id of the space). ``forward(x)`` combines them as the supernet's current mixing says."""

    def __init__(self, ops: Sequence[int], candidates: Iterable[nn.Module], group: int, site: int,
                 state: "_MixingState") -> None:
        super().__init__()
        self.ops, self.group, self.site = [int(op) for op in ops], group, site
        self.candidates = nn.ModuleList(candidates)
        self._state = state  # shared by every mixed op of the supernet; not a module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._state.mixing(self, x)

    def run(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Candidate ``k`` alone."""
        return self.candidates[k](x)


def weighted_sum(op: MixedOp, x: torch.Tensor, weights: Iterable[Any]) -> torch.Tensor:
    """``sum_k w_k op_k(x)`` in candidate order (upstream DARTS' ``MixedOp.forward``)."""
    return sum(w * candidate(x) for w, candidate in zip(weights, op.candidates))


class _MixingState:
    def __init__(self) -> None:
        self.mixing: Mixing = PathMixing({})


class RelaxedSupernet(nn.Module, ABC):
    """Base of every space's relaxed supernet.

    A subclass builds its network with :meth:`mixed_op` at every place of a site and declares ``groups`` (the names
    of its weight groups), ``site_ops[g][s]`` (the op ids of site ``s`` in group ``g``), the architecture weights
    (:meth:`alpha`, :meth:`arch_parameters`) and how an architecture is read off them (:meth:`derive`).
    """

    groups: tuple[str, ...]
    site_ops: list[list[list[int]]]
    empty_ops: tuple[int, ...] = ()
    """Op ids whose candidate adds nothing of its own (a skipped MobileNet block, op -1; a cell's ``none``): upstream
    ProxylessNAS' ``ZeroLayer``, whose active steps leave the site out of an architecture update."""

    def __init__(self) -> None:
        super().__init__()
        self._mixing_state = _MixingState()

    # -- building -------------------------------------------------------------------------------------------------
    def mixed_op(self, group: int, site: int, candidates: Iterable[nn.Module]) -> MixedOp:
        """A place of site ``site`` (of group ``group``) holding ``candidates``, one per op of the site."""
        return MixedOp(self.site_ops[group][site], candidates, group, site, self._mixing_state)

    # -- architecture weights -------------------------------------------------------------------------------------
    @abstractmethod
    def alpha(self, group: int, site: int) -> torch.Tensor:
        """The architecture weights of one site (a 1-D view of a parameter, or a parameter of its own)."""

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture weights, as parameters (in a fixed order)."""
        return [p for name, p in self.named_parameters() if self.is_arch_name(name)]

    def arch_names(self) -> list[str]:
        return [name for name, _ in self.named_parameters() if self.is_arch_name(name)]

    @staticmethod
    @abstractmethod
    def is_arch_name(name: str) -> bool:
        """Whether parameter ``name`` is an architecture weight."""

    def weights(self) -> list[nn.Parameter]:
        """The network weights: every parameter but the architecture weights."""
        return [p for name, p in self.named_parameters() if not self.is_arch_name(name)]

    def probabilities(self) -> list[list[np.ndarray]]:
        """softmax(alpha) of every site, per group (float64 numpy arrays)."""
        with torch.no_grad():
            return [[F.softmax(self.alpha(g, s).detach().double(), dim=-1).cpu().numpy()
                     for s in range(len(self.site_ops[g]))] for g in range(len(self.groups))]

    @abstractmethod
    def derive(self, probabilities: list[list[np.ndarray]] | None = None) -> Any:
        """The architecture the weights select, in the space's encoding (default: of :meth:`probabilities`)."""

    def chosen(self, arch: Any) -> list[tuple[int, int, int]]:
        """(group, site, op id) of every choice ``arch`` (an architecture :meth:`derive` gives) makes. Default: one
        group, ``arch[s]`` the op id at site ``s``; a space with another encoding overrides it."""
        if len(self.groups) != 1:
            raise NotImplementedError(f"{type(self).__name__} has {len(self.groups)} groups: override chosen()")
        return [(0, s, int(op)) for s, op in enumerate(arch)]

    # -- mixing ---------------------------------------------------------------------------------------------------
    @property
    def mixing(self) -> Mixing:
        return self._mixing_state.mixing

    def set_mixing(self, mixing: Mixing) -> None:
        self._mixing_state.mixing = mixing

    def mixed_ops(self) -> list[MixedOp]:
        return [m for m in self.modules() if isinstance(m, MixedOp)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.mixing.begin(self)
        return self.run(x)

    @abstractmethod
    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The network's forward pass (every place of a site calls its :class:`MixedOp`)."""

    def set_skip_dropout(self, p: float) -> None:
        """PDARTS: the dropout rate on the skip candidates (built with ``skip_dropout=True``)."""
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = p


def check_group_ops(ops: Sequence[Sequence[int]] | GroupOps, groups: Sequence[str]) -> dict[str, list[list[int]]]:
    """``ops`` (one per-site list for every group, or a mapping group -> per-site lists) as plain ints per group."""
    by_group = ops if isinstance(ops, Mapping) else {g: ops for g in groups}
    unknown = sorted(set(by_group) - set(groups))
    if unknown or set(by_group) != set(groups):
        raise UserError(f"operations are given for groups {sorted(by_group)}; this supernet has {list(groups)}")
    return {g: [[int(op) for op in site] for site in by_group[g]] for g in groups}


class SoftmaxMixing:
    """DARTS' continuous relaxation: ``sum_k softmax(alpha)_k op_k(x)`` (the softmax taken once per forward)."""

    def begin(self, model: RelaxedSupernet) -> None:
        self.weights = [[F.softmax(model.alpha(g, s), dim=-1) for s in range(len(model.site_ops[g]))]
                        for g in range(len(model.groups))]

    def __call__(self, op: MixedOp, x: torch.Tensor) -> torch.Tensor:
        return weighted_sum(op, x, self.weights[op.group][op.site])


class FixedMixing:
    """Fixed weights per candidate, ``weights[group][site][k]`` (plain floats; PertNAS sets 0 on a perturbed op)."""

    def __init__(self, weights: list[list[list[float]]]) -> None:
        self.weights = weights

    @classmethod
    def ones(cls, model: RelaxedSupernet) -> "FixedMixing":
        return cls([[[1.0] * len(site) for site in group] for group in model.site_ops])

    def begin(self, model: RelaxedSupernet) -> None:
        pass

    def __call__(self, op: MixedOp, x: torch.Tensor) -> torch.Tensor:
        return weighted_sum(op, x, self.weights[op.group][op.site])


class PathMixing:
    """One candidate per site: ``choice[(group, site)]`` is the index of the candidate to run (a single path)."""

    def __init__(self, choice: Mapping[tuple[int, int], int]) -> None:
        self.choice = dict(choice)

    @classmethod
    def of_ops(cls, model: RelaxedSupernet, arch: Sequence[Sequence[int]]) -> "PathMixing":
        """The path running op id ``arch[g][s]`` at every site (it must be one of the site's ops)."""
        return cls({(g, s): model.site_ops[g][s].index(int(op)) for g, group in enumerate(arch)
                    for s, op in enumerate(group)})

    @classmethod
    def argmax(cls, model: RelaxedSupernet) -> "PathMixing":
        """The most probable candidate of every site."""
        return cls({(g, s): int(np.argmax(p)) for g, group in enumerate(model.probabilities())
                    for s, p in enumerate(group) if len(p)})

    def begin(self, model: RelaxedSupernet) -> None:
        pass

    def __call__(self, op: MixedOp, x: torch.Tensor) -> torch.Tensor:
        return op.run(self.choice[(op.group, op.site)], x)
