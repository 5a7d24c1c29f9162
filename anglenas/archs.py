"""Architectures of the MobileNet spaces: published ones, parsing and checking.

An architecture is one op index per searchable layer (``-1`` = identity), written as a space-separated string
such as ``"2 2 -1 0 0 -1 -1 0 5 -1 4 4 0 0 4 2 3 4 4 4 3"``. :func:`parse_arch` also accepts the name of a
published architecture (:data:`PUBLISHED`) or the path of a search result JSON (``search_result.json``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

from anglenas.errors import UserError
from anglenas.spaces import BLOCK_KEYS, IDENTITY, MobileSpace, get_space, space_for_num_layers

SEARCH_RESULT_FORMAT = "anglenas-search-result"

PUBLISHED: dict[str, tuple[str, list[int]]] = {
    "SPOS_ABS": ("gpu", [2, 2, -1, 0, 0, -1, -1, 0, 5, -1, 4, 4, 0, 0, 4, 2, 3, 4, 4, 4, 3]),
    "FAIRNAS_ABS": ("fairnas", [4, 2, 4, 2, 2, 2, 5, 2, 4, 4, 2, 2, 2, 4, 5, 4, 2, 2, 5]),
    "PROXYLESS_ABS": ("gpu", [2, 2, -1, -1, 0, 2, 2, -1, 5, -1, 4, 4, 0, 0, 4, 2, 3, 4, 4, 4, 3]),
}
"""The ABS architectures of the paper's table (spec §0): name -> (space name, arch)."""


def format_arch(arch: Sequence[int]) -> str:
    """The space-separated encoding the search prints and :func:`parse_arch` reads."""
    return " ".join(str(int(op)) for op in arch)


def _space(space: str | MobileSpace) -> MobileSpace:
    return get_space(space) if isinstance(space, str) else space


def check_arch(arch: Sequence[int], space: str | MobileSpace) -> list[int]:
    """Validate ``arch`` against ``space`` and return it as plain ints; a bad one is a :class:`UserError`."""
    space = _space(space)
    arch = [int(op) for op in arch]
    if len(arch) != space.num_layers:
        raise UserError(f"architecture has {len(arch)} op indices but the {space.name} space has "
                        f"{space.num_layers} layers; give one index per layer")
    for i, (op, layer) in enumerate(zip(arch, space.layers)):
        if not IDENTITY <= op < len(BLOCK_KEYS):
            raise UserError(f"layer {i}: op index {op} is out of range; use 0..{len(BLOCK_KEYS) - 1} "
                            f"or {IDENTITY} for identity")
        if op == IDENTITY and not layer.identity_allowed:
            where = ("the first layer of a stage changes the shape" if space.identity_in_repeats
                     else f"the {space.name} space has no identity op")
            raise UserError(f"layer {i}: identity ({IDENTITY}) is not allowed here ({where}); pick an op 0..5")
    return arch


def _parse_ints(value: str) -> list[int] | None:
    """``"2 2 -1 ..."`` (also with commas or brackets) as ints, or None when it is not such a list."""
    tokens = [t for t in re.split(r"[\s,\[\]()]+", value.strip()) if t]
    if not tokens or not all(re.fullmatch(r"[+-]?\d+", t) for t in tokens):
        return None
    return [int(t) for t in tokens]


def load_search_result(path: str | Path, rank: int = 0) -> tuple[str, list[int]]:
    """(space name, arch) of the ``rank``-th best architecture in a search result JSON (or its folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "search_result.json"
    if not path.is_file():
        raise UserError(f"search result {str(path)!r} does not exist; give the search_result.json the search wrote")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read search result {str(path)!r}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != SEARCH_RESULT_FORMAT:
        raise UserError(f"{str(path)!r} is not a search result (expected \"format\": \"{SEARCH_RESULT_FORMAT}\")")
    top = doc.get("top") or []
    if not 0 <= rank < len(top):
        raise UserError(f"{str(path)!r} lists {len(top)} architectures; rank {rank} is out of range")
    try:
        return str(doc["space"]), [int(op) for op in top[rank]["arch"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{str(path)!r}: malformed entry top[{rank}] ({exc!r})") from None


def parse_arch(value: str, space: str | None = None, rank: int = 0) -> tuple[str, list[int]]:
    """(space name, checked arch) from an encoding string, a published name or a search result path.

    ``space`` (a space name) is required to match when given; for a bare encoding without ``space`` the space is
    inferred from the number of layers. ``rank`` picks the architecture of a search result (0 = best).
    """
    value = value.strip()
    ints = _parse_ints(value)
    if ints is not None:
        arch_space = space or space_for_num_layers(len(ints)).name
    elif value.upper() in PUBLISHED:
        arch_space, ints = PUBLISHED[value.upper()]
        ints = list(ints)
    elif value.endswith(".json") or Path(value).exists():
        arch_space, ints = load_search_result(value, rank)
    else:
        raise UserError(f"cannot read architecture {value!r}: give op indices like "
                        f"\"{format_arch(PUBLISHED['SPOS_ABS'][1])}\", a published name "
                        f"({', '.join(PUBLISHED)}) or a search_result.json path")
    if space is not None and get_space(space).name != get_space(arch_space).name:
        raise UserError(f"architecture {value!r} belongs to the {arch_space} space, not to {space}")
    return arch_space, check_arch(ints, arch_space)
