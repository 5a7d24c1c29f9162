"""The DARTS cell family: the upstream primitives, genotypes, the ABS single-path supernet of the DARTS space, the
DARTS search network (its relaxed supernet) and the networks built from a genotype (spec §1.4, §1.5, §10.2)."""
from anglenas.spaces.darts.genotypes import Genotype
from anglenas.spaces.darts.ops import PRIMITIVES
from anglenas.spaces.darts.space import DartsSpace

__all__ = ["DartsSpace", "Genotype", "PRIMITIVES"]
