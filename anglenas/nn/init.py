"""Weight initialisation schemes of spec §1.2."""
from __future__ import annotations

import math

from torch import nn


def init_weights(model: nn.Module, scheme: str) -> None:
    """Initialise ``model`` in place.

    ``he_fanout``: conv weights N(0, sqrt(2 / (k*k*C_out))), BN gamma=1 beta=0, Linear left at PyTorch's default
    (the SPOS shrinking supernet, whose random weights are the angle's W0). ``default``: PyTorch's own init.
    """
    if scheme == "default":
        return
    if scheme != "he_fanout":
        raise ValueError(f"unknown init scheme {scheme!r} (he_fanout or default)")
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
