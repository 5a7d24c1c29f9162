"""AngleNAS: angle-based search-space shrinking (ABS, Hu et al., ECCV 2020) and the NAS methods it serves."""

__version__ = "0.1.0"
