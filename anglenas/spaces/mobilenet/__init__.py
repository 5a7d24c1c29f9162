"""The MobileNet family: the SPOS / ProxylessNAS "gpu" space and the FairNAS space (the original's ``SPOS/`` and
``FairNAS/``)."""
from anglenas.spaces.mobilenet.blocks import BLOCK_KEYS, IDENTITY, LayerSpec
from anglenas.spaces.mobilenet.space import FAIRNAS_SPACE, FAIRNAS_STEM_OVERCOUNT, GPU_SPACE, MobileSpace

__all__ = ["BLOCK_KEYS", "FAIRNAS_SPACE", "FAIRNAS_STEM_OVERCOUNT", "GPU_SPACE", "IDENTITY", "LayerSpec", "MobileSpace"]
