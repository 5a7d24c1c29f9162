"""Network modules: MBConv blocks, the weight-sharing supernet and initialisation."""
from anglenas.nn.blocks import InvertedResidual, conv_bn_relu6, make_block
from anglenas.nn.init import init_weights
from anglenas.nn.supernet import ChoiceLayer, MobileSuperNet

__all__ = ["ChoiceLayer", "InvertedResidual", "MobileSuperNet", "conv_bn_relu6", "init_weights", "make_block"]
