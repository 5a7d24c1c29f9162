"""DARTS and PDARTS (upstream quark0/darts and chenxin061/pdarts) in the shrunk space (spec §9)."""
from anglenas.searchers.darts import pdarts, search  # noqa: F401  (register darts, pdarts)
