"""NAS-Bench-201: the cell space, its ground truth, the SPOS supernet and the angle experiments (the original's
``NAS-Bench-201/exps/angle``)."""

from anglenas.nb201.natsbench import create, get_cell_based_tiny_net, network_from_config

__all__ = ["create", "get_cell_based_tiny_net", "network_from_config"]
