"""The search-space registry (timm's ``register_model`` pattern).

A space family (a sub-package of :mod:`anglenas.spaces`) registers the paper-size instance of each of its spaces::

    @register_space
    def gpu() -> MobileSpace:
        return MobileSpace(name="gpu", ...)

The factory runs the first time ``get_space("gpu")`` asks for it; nothing is built at import. ``space_names()``
lists every registered space (the sub-packages of :mod:`anglenas.spaces` and the ``anglenas.spaces`` entry points
are imported on the first lookup; see :mod:`anglenas.registry`).
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable, TypeVar

from anglenas.errors import UserError
from anglenas.registry import Registry

if TYPE_CHECKING:
    from anglenas.flops import FlopsTable
    from anglenas.spaces.base import SearchSpace

S = TypeVar("S")
SPACES: "Registry[SearchSpace]" = Registry("search space", "anglenas.spaces", "anglenas.spaces")


def register_space(factory: Callable[[], S]) -> Callable[[], S]:
    """Register ``factory`` as the space named like the function (the space it returns must carry that name)."""

    def build():
        space = factory()
        if space.name != factory.__name__:
            raise ValueError(f"register_space: {factory.__name__}() returned a space named {space.name!r}")
        return space

    SPACES.register(factory.__name__, build)
    return factory


def space_names() -> list[str]:
    return SPACES.names()


def get_space(name: str) -> "SearchSpace":
    """The registered (paper-size) space called ``name``; an unknown name is a :class:`UserError`."""
    return SPACES.get(name)


def space_for_num_sites(num_sites: int) -> "SearchSpace":
    """The space of an original (name-less) operations pickle or architecture, from its number of sites."""
    spaces = SPACES.all()
    found = [s for s in spaces if s.num_sites == num_sites]
    if len(found) == 1:
        return found[0]
    known = ", ".join(f"{s.name} ({s.num_sites} {s.site_kind}s)" for s in spaces)
    if not found:
        raise UserError(f"no search space has {num_sites} layers or edges; known spaces: {known}")
    raise UserError(f"{num_sites} sites fit several spaces ({', '.join(s.name for s in found)}); name the space "
                    f"(--space)")


@functools.lru_cache(maxsize=None)
def reference_table(space_name: str) -> "FlopsTable":
    """The FLOPs table of a registered space at the paper's size; FLOPs limits are expressed in it."""
    return get_space(space_name).flops_table()
