"""The search-space registry (timm's ``register_model`` pattern).

A space module defines a :class:`~anglenas.spaces.base.SearchSpace` and registers the paper-size instance::

    @register_space
    def gpu() -> MobileSpace:
        return MobileSpace(name="gpu", ...)

``get_space("gpu")`` returns it; ``space_names()`` lists every registered space. Importing this package imports
the built-in space modules, which registers them; a user's space registers by calling :func:`register_space`.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from anglenas.errors import UserError
from anglenas.spaces.base import Arch, SearchSpace, ShrinkDefaults

S = TypeVar("S", bound=SearchSpace)
_SPACES: dict[str, SearchSpace] = {}


def register_space(factory: Callable[[], S]) -> Callable[[], S]:
    """Register the space that ``factory()`` returns under its ``name`` (a later registration replaces it)."""
    space = factory()
    _SPACES[space.name] = space
    return factory


def space_names() -> list[str]:
    return sorted(_SPACES)


def get_space(name: str) -> SearchSpace:
    """The registered (paper-size) space called ``name``; an unknown name is a :class:`UserError`."""
    try:
        return _SPACES[name]
    except KeyError:
        raise UserError(f"unknown search space {name!r}; choose one of: {', '.join(space_names())}") from None


def space_for_num_sites(num_sites: int) -> SearchSpace:
    """The space of an original (name-less) operations pickle or architecture, from its number of sites."""
    found = [s for s in _SPACES.values() if s.num_sites == num_sites]
    if len(found) == 1:
        return found[0]
    known = ", ".join(f"{s.name} ({s.num_sites} {s.site_kind}s)" for s in _SPACES.values())
    if not found:
        raise UserError(f"no search space has {num_sites} layers or edges; known spaces: {known}")
    raise UserError(f"{num_sites} sites fit several spaces ({', '.join(s.name for s in found)}); name the space "
                    f"(--space)")


from anglenas.spaces import darts, mobilenet, nb201, shufflenetv2  # noqa: E402,F401  (each registers its spaces)

__all__ = ["Arch", "SearchSpace", "ShrinkDefaults", "get_space", "register_space", "space_for_num_sites",
           "space_names"]
