"""Architectures of every registered space: published ones, parsing and checking.

An architecture is one op id per site, written as a space-separated string such as
``"2 2 -1 0 0 -1 -1 0 5 -1 4 4 0 0 4 2 3 4 4 4 3"`` (MobileNet: ``-1`` = identity). :func:`parse_arch` also accepts
the name of a published architecture (each space's ``published``), the path of a search result JSON
(``search_result.json``) or a file a space reads itself (:meth:`~anglenas.spaces.base.SearchSpace.read_arch_file`,
e.g. a DARTS ``genotype.json``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from anglenas.errors import UserError
from anglenas.search_result import read_search_result
from anglenas.spaces import get_space, space_for_num_sites
from anglenas.spaces.base import SearchSpace
from anglenas.spaces.registry import SPACES


def published() -> dict[str, tuple[str, Any]]:
    """Every registered space's published architectures: name -> (space name, arch)."""
    return {name: (space.name, arch) for space in SPACES.all() for name, arch in space.published.items()}


def _space(space: str | SearchSpace) -> SearchSpace:
    return get_space(space) if isinstance(space, str) else space


def check_arch(arch: Any, space: str | SearchSpace) -> Any:
    """Validate ``arch`` against ``space`` (a :class:`UserError` when it is not one of its architectures)."""
    return _space(space).check_arch(arch)


def _parse_ints(value: str) -> list[int] | None:
    """``"2 2 -1 ..."`` (also with commas or brackets) as ints, or None when it is not such a list."""
    tokens = [t for t in re.split(r"[\s,\[\]()]+", value.strip()) if t]
    if not tokens or not all(re.fullmatch(r"[+-]?\d+", t) for t in tokens):
        return None
    return [int(t) for t in tokens]


def parse_arch(value: str, space: str | None = None, rank: int = 0) -> tuple[str, list[int]]:
    """(space name, checked arch) from an encoding string, a published name or a search result path.

    ``space`` (a space name) is required to match when given; for a bare encoding without ``space`` the space is
    inferred from the number of layers. ``rank`` picks the architecture of a search result (0 = best).
    """
    value = value.strip()
    ints = _parse_ints(value)
    names = published()
    if ints is not None:
        arch_space = space or space_for_num_sites(len(ints)).name
    elif value.upper() in names:
        arch_space, ints = names[value.upper()]
    elif value.endswith(".json") or Path(value).exists():
        arch_space, ints = _read_arch_file(value, space, rank)
    elif (text := _read_arch_text(value, space)) is not None:
        arch_space, ints = text
    else:
        raise UserError(f"cannot read architecture {value!r}: give op ids like "
                        f"\"{' '.join(map(str, names['SPOS_ABS'][1]))}\", a published name "
                        f"({', '.join(sorted(names))}), a space's own notation (an NB201 arch string) or a "
                        f"search_result.json path")
    if space is not None and get_space(space).name != get_space(arch_space).name:
        raise UserError(f"architecture {value!r} belongs to the {arch_space} space, not to {space}")
    return arch_space, check_arch(ints, arch_space)


def _read_arch_text(value: str, space: str | None) -> tuple[str, Any] | None:
    """(space, arch) of a space's own notation (e.g. NB201's ``|op~0|+...``), or None."""
    for candidate in [get_space(space)] if space else SPACES.all():
        arch = candidate.read_arch_text(value)
        if arch is not None:
            return candidate.name, arch
    return None


def _read_arch_file(value: str, space: str | None, rank: int) -> tuple[str, Any]:
    """A search result, or a file that a space reads itself (e.g. DARTS' genotype.json)."""
    path = Path(value)
    candidates = [get_space(space)] if space else SPACES.all()
    if path.is_file():
        for candidate in candidates:
            arch = candidate.read_arch_file(path)
            if arch is not None:
                return candidate.name, arch
    result = read_search_result(value)
    if not 0 <= rank < len(result.archs):
        raise UserError(f"{value!r} lists {len(result.archs)} architectures; rank {rank} is out of range")
    return result.space, result.archs[rank]
