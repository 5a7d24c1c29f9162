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

from anglenas.registry import Registry


@dataclass(frozen=True)
class Searcher:
    name: str
    config: type
    run: Callable[[Any], Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""


SEARCHERS: "Registry[Searcher]" = Registry("searcher", "anglenas.searchers", "anglenas.searchers")


def register_searcher(name: str, config: type, defaults: dict[str, Any] | None = None, description: str = ""):
    """Decorator registering ``run(cfg)`` as searcher ``name`` over config class ``config``."""

    def wrap(run: Callable[[Any], Any]) -> Callable[[Any], Any]:
        searcher = Searcher(name, config, run, dict(defaults or {}), description or (run.__doc__ or ""))
        SEARCHERS.register(name, lambda: searcher)
        return run

    return wrap


def searcher_names() -> list[str]:
    return SEARCHERS.names()


def get_searcher(name: str) -> Searcher:
    return SEARCHERS.get(name)
