"""Search-space registry: ``get_space("gpu")`` / ``get_space("fairnas")``."""
from __future__ import annotations

from anglenas.errors import UserError
from anglenas.spaces.mobilenet import (BLOCK_KEYS, BLOCK_SHAPES, FAIRNAS_SPACE, GPU_SPACE, IDENTITY,
                                       REFERENCE_SPACES, LayerSpec, MobileSpace, op_name)

__all__ = ["BLOCK_KEYS", "BLOCK_SHAPES", "FAIRNAS_SPACE", "GPU_SPACE", "IDENTITY", "LayerSpec", "MobileSpace",
           "get_space", "op_name", "space_names", "space_for_num_layers"]


def space_names() -> list[str]:
    return sorted(REFERENCE_SPACES)


def get_space(name: str) -> MobileSpace:
    """The reference space called ``name``; an unknown name is a :class:`UserError` listing the known ones."""
    try:
        return REFERENCE_SPACES[name]
    except KeyError:
        raise UserError(f"unknown search space {name!r}; choose one of: {', '.join(space_names())}") from None


def space_for_num_layers(num_layers: int) -> MobileSpace:
    """Infer the space of an original (name-less) operations pickle from its number of layers."""
    for space in REFERENCE_SPACES.values():
        if space.num_layers == num_layers:
            return space
    known = ", ".join(f"{s.name} ({s.num_layers} layers)" for s in REFERENCE_SPACES.values())
    raise UserError(f"no search space has {num_layers} layers; known spaces: {known}")
