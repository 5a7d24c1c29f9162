"""The searcher registry: SPOS, FairNAS, DARTS, PDARTS, ProxylessNAS, PertNAS are each a registered searcher.

A searcher is a name, its config dataclass (every field a flag, see :mod:`anglenas.config`), the defaults it
sets on that config (so SPOS and FairNAS share one config class with different batch sizes, LRs and FLOPs
windows) and a ``run(cfg)`` function::

    @register_searcher("spos", SearchConfig, defaults=dict(batch_size=512, lr=0.25, max_flops=475e6))
    def run_spos(cfg: SearchConfig) -> dict: ...

Entry points stay thin: ``get_searcher(name)`` gives what they parse and run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from anglenas.errors import UserError


@dataclass(frozen=True)
class Searcher:
    name: str
    config: type
    run: Callable[[Any], Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_SEARCHERS: dict[str, Searcher] = {}


def register_searcher(name: str, config: type, defaults: dict[str, Any] | None = None, description: str = ""):
    """Decorator registering ``run(cfg)`` as searcher ``name`` over config class ``config``."""

    def wrap(run: Callable[[Any], Any]) -> Callable[[Any], Any]:
        _SEARCHERS[name] = Searcher(name, config, run, dict(defaults or {}), description or (run.__doc__ or ""))
        return run

    return wrap


def searcher_names(config: type | None = None) -> list[str]:
    """Registered searchers (those over config class ``config`` when given)."""
    return sorted(n for n, s in _SEARCHERS.items() if config is None or s.config is config)


def get_searcher(name: str) -> Searcher:
    _load_builtin()
    try:
        return _SEARCHERS[name]
    except KeyError:
        raise UserError(f"unknown searcher {name!r}; choose one of: {', '.join(searcher_names())}") from None


def _load_builtin() -> None:
    """Import the built-in searcher modules (each registers itself)."""
    import importlib

    for module in BUILTIN:
        importlib.import_module(module)


BUILTIN: list[str] = ["anglenas.search.run", "anglenas.proxyless.search", "anglenas.darts.search",
                      "anglenas.darts.pdarts", "anglenas.pertnas.search"]
"""Modules that register searchers; a new searcher module appends itself here."""
