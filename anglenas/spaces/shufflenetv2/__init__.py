"""The ShuffleNetV2 block-search space of SPOS (Guo et al. 2020; the authors' ``ShuffleNet-Series/OneShot``)."""
from anglenas.spaces.shufflenetv2.space import ShuffleNetV2Space, Site

__all__ = ["ShuffleNetV2Space", "Site"]
