"""PertNAS (Ahmad, Xie and Zhang, DAC 2023): discrete-perturbation search on any space with a relaxed supernet.

:mod:`~anglenas.searchers.pertnas.sites` what it searches in a space, :mod:`~anglenas.searchers.pertnas.model` the
search network, :mod:`~anglenas.searchers.pertnas.perturb` training and perturb-val,
:mod:`~anglenas.searchers.pertnas.select` the op decisions, :mod:`~anglenas.searchers.pertnas.cell` the DARTS cell's
rules (topology, genotype), :mod:`~anglenas.searchers.pertnas.phases` the search on one rank,
:mod:`~anglenas.searchers.pertnas.search` the registered searcher ``pertnas``.
"""
from anglenas.searchers.pertnas import search  # noqa: F401,E402  (registers pertnas)
