"""DARTS and PDARTS: the cell operations, genotypes, search networks, searchers and the CIFAR evaluation network.

Upstream DARTS (quark0/darts) and PDARTS (chenxin061/pdarts) re-written for the shrunk spaces of ABS (spec §1.5, §9).
"""
