"""Search spaces: one sub-package per family (its description, supernets, networks, ops and FLOPs), each space a
registered plug-in (:mod:`anglenas.spaces.registry`) implementing :class:`~anglenas.spaces.base.SearchSpace`."""
from anglenas.spaces.registry import get_space, reference_table, register_space, space_for_num_sites, space_names

__all__ = ["get_space", "reference_table", "register_space", "space_for_num_sites", "space_names"]
