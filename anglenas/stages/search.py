"""The search stage: any registered searcher on any registered space it fits.

    python searching/main.py --searcher darts --space nb201 --demo
    python searching/main.py --searcher proxylessnas --operations_path runs/shrink/operations.json

The stage resolves the space (``--space``, else the operations file's, else the searcher's own), restricts it to
the operations file, refuses in one line a pair that does not fit, runs the searcher and writes its
:class:`~anglenas.search_result.SearchResult` to ``SAVE/search_result.json``, with the wall time of every session
of the run summed (``SAVE/search_time.json``). The original's entry points (``darts-master/train_search.py``,
``pdarts-master/train_search.py``, ``searching/imagenet_arch_search.py``) are presets over it.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Sequence

from anglenas.checkpoint import atomic_write_text, check_writable, removed_if_refused
from anglenas.config import parse_config
from anglenas.errors import UserError
from anglenas.operations import Operations, load_operations
from anglenas.search_result import SearchResult, write_search_result
from anglenas.searchers.registry import Searcher, get_searcher, searcher_names, searchers_for
from anglenas.spaces import get_space, space_names

TIME_FILE = "search_time.json"


def run_folder(cfg: Any) -> Path:
    """Where a searcher's run lives (PertNAS nests it as SAVE/search-NOTE, as the original)."""
    folder = getattr(cfg, "run_folder", None)
    return Path(folder() if callable(folder) else cfg.save)


def resolve_operations(cfg: Any, searcher: Searcher) -> Operations:
    """The space to search: ``cfg.space`` restricted by ``cfg.operations_path`` (either may be empty)."""
    space = get_space(cfg.space) if cfg.space else None
    if cfg.operations_path:
        return load_operations(cfg.operations_path, space)
    return Operations.full(space or get_space(searcher.home_space))


def run_search(searcher: Searcher, cfg: Any) -> SearchResult | None:
    """Run ``searcher`` with settings ``cfg``; write and return its result (None on ranks other than 0)."""
    operations = resolve_operations(cfg, searcher)
    searcher.check_fits(operations.space)
    save = run_folder(cfg)
    check_writable(save, "run folder", "--save")
    spent = _time_spent(save)
    t0 = time.perf_counter()
    with removed_if_refused(save, {TIME_FILE}):
        try:
            result = searcher.run(cfg, operations)
        finally:
            _write_time(save, spent + time.perf_counter() - t0)
    if result is None:
        return None
    result.cost.setdefault("wall_seconds", round(spent + time.perf_counter() - t0, 2))
    path = write_search_result(result, save)
    print(f"search result: {path} (best: {operations.space.format_arch(result.best)})", flush=True)
    return result


def _time_spent(save: Path) -> float:
    path = save / TIME_FILE
    try:
        return float(json.loads(path.read_text())["wall_seconds"]) if path.is_file() else 0.0
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        return 0.0


def _write_time(save: Path, seconds: float) -> None:
    if save.is_dir():
        atomic_write_text(save / TIME_FILE, json.dumps({"wall_seconds": round(seconds, 2)}) + "\n")


def _pop_option(argv: list[str], names: Sequence[str]) -> str | None:
    """The value of the first of ``names`` in ``argv`` (``--x V`` or ``--x=V``), removed from ``argv``."""
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                value = argv[i + 1]
                del argv[i:i + 2]
                return value
            if arg.startswith(name + "="):
                del argv[i]
                return arg.split("=", 1)[1]
    return None


def overview() -> str:
    """Which searcher fits which space (for ``--help``)."""
    lines = ["searchers (--searcher) and the spaces (--space) each fits:"]
    fits = {name: [s for s in space_names() if name in searchers_for(get_space(s))] for name in searcher_names()}
    for name in searcher_names():
        searcher = get_searcher(name)
        lines.append(f"  {name:<13} {', '.join(fits[name]):<42} {searcher.description}")
    return "\n".join(lines)


def parse_search(argv: Sequence[str] | None = None, searcher: str | None = None, description: str = "",
                 prog: str | None = None, presets: dict[str, dict] | None = None,
                 broker_defaults: dict | None = None
                 ) -> tuple[Searcher, Any]:
    """(searcher, settings) from ``argv``: ``--searcher NAME`` (default ``searcher``) picks the config class whose
    flags the rest of ``argv`` sets; the searcher's own defaults apply first, then its presets (``--demo``) and
    ``presets`` (an entry point's own). ``broker_defaults``: the site's RabbitMQ settings (searching/config.py)."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    first = get_searcher(_pop_option(argv, ["--searcher"]) or searcher or "spos")

    def parse(entry_presets: dict[str, dict]) -> Any:
        cfg = parse_config(first.config, argv, description=f"{description}\n{overview()}", prog=prog,
                           presets={**first.presets, **entry_presets}, defaults=first.defaults)
        if broker_defaults is not None and hasattr(cfg, "mq_host"):
            from anglenas.searchers.spos.mq import resolve_broker

            cfg = dataclasses.replace(cfg, **dataclasses.asdict(resolve_broker(cfg, broker_defaults)))
        return cfg

    cfg = parse(presets or {})
    method = getattr(cfg, "method", None)  # SPOS' config names its searcher (spos, fairnas, rsps): --method
    chosen = get_searcher(method) if method is not None and method != first.name else first
    if cfg.space is not None and cfg.space not in space_names():
        raise UserError(f"unknown search space {cfg.space!r}; choose one of: {', '.join(space_names())}")
    if cfg.space is None and cfg.demo:  # the space's own demo sizes, as with --space NAME, below the entry point's
        space = load_operations(cfg.operations_path).space if cfg.operations_path else get_space(chosen.home_space)
        demo = {**first.presets.get("demo", {}), **space.search_demo, **(presets or {}).get("demo", {})}
        cfg = parse({**(presets or {}), "demo": demo})
    return chosen, cfg
