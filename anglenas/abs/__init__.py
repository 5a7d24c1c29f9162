"""ABS: angle-based search-space shrinking (spec §3)."""
