"""Weight initialisation schemes of the original's supernets and networks (``SPOS/shrinking/super_model.py``)."""
from __future__ import annotations

import math

from torch import nn


def init_weights(model: nn.Module, scheme: str, zero_init_residual: bool = False) -> None:
    """Initialise ``model`` in place.

    ``he_fanout``: conv weights N(0, sqrt(2 / (k*k*C_out))), BN gamma=1 beta=0, Linear left at PyTorch's default
    (the SPOS shrinking supernet, whose random weights are the angle's W0). ``default``: PyTorch's own init.
    ``zero_init_residual`` then starts every residual block that supports it (``zero_init_last()``) as the
    identity, which helps a deep single-path supernet leave chance early (``bench/bench_supernet_learning.py``;
    not in the original).
    """
    if scheme not in ("he_fanout", "default"):
        raise ValueError(f"unknown init scheme {scheme!r} (he_fanout or default)")
    if scheme == "he_fanout":
        _he_fanout(model)
    if zero_init_residual:
        for m in model.modules():
            if hasattr(m, "zero_init_last"):
                m.zero_init_last()


def _he_fanout(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
