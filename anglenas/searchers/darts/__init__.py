"""DARTS and PDARTS (quark0/darts, chenxin061/pdarts) on any space with a relaxed supernet (docs/darts.md)."""
from anglenas.searchers.darts import pdarts, search  # noqa: F401  (register darts, pdarts)
