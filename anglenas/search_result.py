"""What every searcher returns, and its one file format (``search_result.json``).

A :class:`SearchResult` names the searcher and the space, lists the chosen architectures best first in the space's
encoding (op ids per site; a DARTS genotype) with the searcher's score of each, and states what the search cost::

    {"format": "anglenas-search-result", "version": 2, "searcher": "darts", "space": "nb201",
     "operations": [[1, 2, 3], ...], "score_name": "softmax(alpha) of the chosen ops",
     "top": [{"arch": [3, 3, 1, 3, 2, 3], "arch_str": "|nor_conv_3x3~0|+...", "score": 0.81,
              "flops_m": 120.3, "params_m": 1.1}, ...],
     "cost": {"wall_seconds": 412.0, "device": "cpu"}, ...}

:func:`write_search_result` writes it (atomically), :func:`read_search_result` reads it and the version-1 files of
earlier releases (SPOS' ``top1`` scores, ProxylessNAS' ``method``). ``training/train_from_scratch.py``,
``darts-master/train.py`` and the NAS-Bench-201 tools read architectures through it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anglenas.checkpoint import atomic_write_text
from anglenas.errors import UserError
from anglenas.spaces.registry import get_space

FORMAT, VERSION = "anglenas-search-result", 2
FILENAME = "search_result.json"


@dataclass
class SearchResult:
    """The outcome of one search.

    ``archs`` best first, in the space's encoding; ``scores[i]`` the searcher's own score of ``archs[i]`` (what it
    is: ``score_name``; None where the searcher has none); ``operations`` the op ids per site of the space searched
    (None: the whole space); ``cost`` what the search took (``wall_seconds``, ``device``, counts of epochs or
    evaluations); ``arch_details[i]`` extra numbers of ``archs[i]``; ``details`` anything else worth keeping
    (per-epoch history, the generations of an evolution).
    """

    searcher: str
    space: str
    archs: list[Any]
    scores: list[float | None]
    score_name: str = ""
    operations: list[list[int]] | None = None
    cost: dict[str, Any] = field(default_factory=dict)
    arch_details: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.archs or len(self.scores) != len(self.archs):
            raise ValueError(f"a search result needs at least one architecture and one score per architecture "
                             f"({len(self.archs)} archs, {len(self.scores)} scores)")

    @property
    def best(self) -> Any:
        return self.archs[0]

    def to_json(self) -> str:
        space = get_space(self.space)
        top = []
        for i, (arch, score) in enumerate(zip(self.archs, self.scores)):
            flops, params = space.arch_cost(arch)
            entry = {"arch": space.arch_to_json(arch), "arch_str": space.format_arch(arch), "score": score,
                     "flops_m": flops / 1e6, "params_m": params / 1e6}
            entry.update(self.arch_details[i] if i < len(self.arch_details) else {})
            top.append(entry)
        doc = {"format": FORMAT, "version": VERSION, "searcher": self.searcher, "space": self.space,
               "operations": self.operations, "score_name": self.score_name, "top": top, "cost": self.cost,
               **self.details}
        return compact_json(doc)


def compact_json(doc: Any) -> str:
    """JSON with one key per line but every list of numbers on one line."""
    text = json.dumps(doc, indent=1)
    return re.sub(r"\[[^\[\]{}\"]*\]", lambda m: "[" + " ".join(m.group(0)[1:-1].split()) + "]", text) + "\n"


def write_search_result(result: SearchResult, path: str | Path) -> Path:
    """Write ``result`` to ``path`` (a file, or a folder that gets ``search_result.json``) atomically."""
    path = Path(path)
    if path.suffix != ".json":
        path = path / FILENAME
    atomic_write_text(path, result.to_json())
    return path


def read_search_result(path: str | Path) -> SearchResult:
    """The search result in ``path`` (a ``search_result.json`` or its folder), of version 2 or 1."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise UserError(f"search result {str(path)!r} does not exist; give the {FILENAME} the search wrote")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read search result {str(path)!r}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{str(path)!r} is not a search result (expected \"format\": \"{FORMAT}\")")
    if doc.get("version") not in (1, VERSION):
        raise UserError(f"{str(path)!r}: search result version {doc.get('version')} is not supported "
                        f"(1 or {VERSION})")
    top = doc.get("top")
    if not isinstance(top, list) or not top:
        raise UserError(f"{str(path)!r} lists no architecture (\"top\" is empty)")
    try:
        space = get_space(str(doc["space"]))
        archs = [space.check_arch(space.arch_from_json(entry["arch"])) for entry in top]
        scores = [entry.get("score", entry.get("top1")) for entry in top]
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{str(path)!r}: malformed entry in \"top\" ({exc!r})") from None
    known = {"format", "version", "searcher", "method", "space", "operations", "score_name", "top", "cost"}
    return SearchResult(searcher=str(doc.get("searcher") or doc.get("method") or "spos"), space=space.name,
                        archs=archs, scores=scores, score_name=doc.get("score_name", "supernet top-1 (%)"),
                        operations=doc.get("operations"), cost=doc.get("cost", {}),
                        arch_details=[{k: v for k, v in e.items()
                                       if k not in ("arch", "arch_str", "score", "flops_m", "params_m")} for e in top],
                        details={k: v for k, v in doc.items() if k not in known})
