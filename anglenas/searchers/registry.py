"""The searcher registry: every searcher (SPOS, FairNAS, RSPS, DARTS, PDARTS, ProxylessNAS, PertNAS) is a plug-in.

A searcher is a name, its settings (a config dataclass that includes :class:`SearchInputConfig`, every field a
flag), what it needs of a space (``"supernet"``: the single-path supernet every space has; ``"relaxed"``: the
relaxed supernet of :mod:`anglenas.spaces.relaxed`) and ``run(cfg, operations) -> SearchResult``::

    @register_searcher("mysearch", MySearchConfig, needs="relaxed", home_space="nb201")
    def run_mysearch(cfg: MySearchConfig, operations: Operations) -> SearchResult: ...

``defaults`` are settings the searcher gives its config before any flag (SPOS and FairNAS share one config with
different batch sizes and FLOPs windows); ``presets`` the settings of a preset flag (``{"demo": {...}}``). The
search stage (:mod:`anglenas.stages.search`) resolves the space and its operations file, checks that the pair fits,
runs the searcher and writes its result.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from anglenas.config import field as config_field
from anglenas.errors import UserError
from anglenas.registry import Registry
from anglenas.spaces.registry import SPACES

if TYPE_CHECKING:
    from anglenas.operations import Operations
    from anglenas.search_result import SearchResult
    from anglenas.spaces.base import SearchSpace

NEEDS = ("supernet", "relaxed")


@dataclass
class SearchInputConfig:
    """Which space a searcher searches: a registered space, restricted by an operations file."""

    space: str | None = config_field(None, "search space (default: the operations file's, else the searcher's "
                                           "own: spos/fairnas/rsps/proxylessnas gpu, darts/pdarts/pertnas darts)",
                                     presets=lambda: {s.name: {"demo": dict(s.search_demo)} for s in SPACES.all()})
    operations_path: str = config_field("", "operations file written by shrinking (JSON, or the original pickle); "
                                            "empty: the whole space")


@dataclass(frozen=True)
class Searcher:
    """A registered searcher (see the module docstring)."""

    name: str
    config: type
    run: "Callable[[Any, Operations], SearchResult]"
    needs: str
    home_space: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    description: str = ""

    def check_fits(self, space: "SearchSpace") -> None:
        """A one-line :class:`UserError` unless this searcher can search ``space``."""
        if self.needs == "relaxed" and not space.has_relaxed_supernet:
            raise UserError(f"{self.name} needs a relaxed supernet, which the {space.name} space does not have; "
                            f"search it with {', '.join(searchers_for(space))}")


SEARCHERS: "Registry[Searcher]" = Registry("searcher", "anglenas.searchers", "anglenas.searchers")


def register_searcher(name: str, config: type, needs: str, home_space: str,
                      defaults: Mapping[str, Any] | None = None, presets: Mapping[str, Mapping[str, Any]] | None = None,
                      description: str = ""):
    """Decorator registering ``run(cfg, operations)`` as searcher ``name`` (see the module docstring)."""
    if needs not in NEEDS:
        raise ValueError(f"needs must be one of {NEEDS}, got {needs!r}")

    def wrap(run: Callable[..., Any]) -> Callable[..., Any]:
        searcher = Searcher(name, config, run, needs, home_space, dict(defaults or {}), dict(presets or {}),
                            description or (run.__doc__ or "").strip().splitlines()[0])
        SEARCHERS.register(name, lambda: searcher)
        return run

    return wrap


def searcher_names() -> list[str]:
    return SEARCHERS.names()


def get_searcher(name: str) -> Searcher:
    return SEARCHERS.get(name)


def searchers_for(space: "SearchSpace") -> list[str]:
    """The searchers that can search ``space``."""
    return [s.name for s in SEARCHERS.all() if s.needs != "relaxed" or space.has_relaxed_supernet]
