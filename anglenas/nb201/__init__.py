"""NAS-Bench-201: the cell space, its ground truth, the SPOS supernet and the angle experiments (spec §1.6, §11)."""
