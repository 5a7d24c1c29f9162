"""PertNAS (Ahmad, Xie and Zhang, DAC 2023): discrete-perturbation evolutionary search on the DARTS space.

:mod:`~anglenas.pertnas.model` the search network, :mod:`~anglenas.pertnas.perturb` training and perturb-val,
:mod:`~anglenas.pertnas.select` the decisions, :mod:`~anglenas.pertnas.search` the registered searcher.
"""
