"""PertNAS (Ahmad, Xie and Zhang, DAC 2023): discrete-perturbation evolutionary search on the DARTS space.

:mod:`~anglenas.searchers.pertnas.model` the search network, :mod:`~anglenas.searchers.pertnas.perturb` training and perturb-val,
:mod:`~anglenas.searchers.pertnas.select` the decisions, :mod:`~anglenas.searchers.pertnas.search` the registered searcher.
"""
from anglenas.searchers.pertnas import search  # noqa: F401,E402  (registers pertnas)
