"""The NAS-Bench-201 cell family: the cell encoding, its space, the SPOS supernet, the stand-alone network and the
relaxed (DARTS) supernet (the original's ``NAS-Bench-201/``)."""
from anglenas.spaces.nb201.space import NB201_SPACE, CellPathSampler, NB201Space

__all__ = ["CellPathSampler", "NB201Space", "NB201_SPACE"]
