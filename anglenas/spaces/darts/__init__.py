"""The DARTS cell family: the upstream primitives, genotypes, the ABS single-path supernet of the DARTS space, the
DARTS search network (its relaxed supernet) and the networks built from a genotype (the original's ``DARTS/shrinking``,
quark0/darts ``cnn/model_search.py``, ``DARTS/training``)."""
from anglenas.spaces.darts.genotypes import Genotype
from anglenas.spaces.darts.ops import PRIMITIVES
from anglenas.spaces.darts.space import DartsSpace

__all__ = ["DartsSpace", "Genotype", "PRIMITIVES"]
