"""ABS: angle-based search-space shrinking (the paper's Section 3; the original's ``*/shrinking``)."""
