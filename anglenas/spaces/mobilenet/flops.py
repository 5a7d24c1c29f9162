"""The FLOPs table of a MobileNet space, in closed form (identity, op -1, costs 0)."""
from __future__ import annotations

import math

import torch
from torch import nn

from anglenas.flops import FlopsTable, chain_flops
from anglenas.spaces.mobilenet.blocks import BLOCK_KEYS, InvertedResidual, MobileLayout, conv_bn_relu6, make_block


def measure_table(s: MobileLayout) -> FlopsTable:
    """FLOPs / params of the stem and first block (``pre``), the head and classifier (``post``) and every block of
    every layer, counted on the meta device (shapes only)."""
    with torch.device("meta"):
        pre, pre_params = chain_flops(
            nn.Sequential(conv_bn_relu6(3, s.stem_channels, 3, s.stem_stride),
                          InvertedResidual(s.stem_channels, s.first_block_channels, 3, 1, 1)),
            s.input_size)
        final_res = math.ceil(s.layers[-1].input_res / s.layers[-1].stride)
        head = nn.Sequential(conv_bn_relu6(s.layers[-1].oup, s.head_channels, 1, 1), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(s.head_channels, s.num_classes))
        post, post_params = chain_flops(head, final_res)
        flops, params = [], []
        for layer in s.layers:
            costs = [chain_flops(make_block(op, layer.inp, layer.oup, layer.stride), layer.input_res)
                     for op in range(len(BLOCK_KEYS))]
            flops.append([c[0] for c in costs] + [0])  # identity
            params.append([c[1] for c in costs] + [0])
    return FlopsTable(s.name, s.input_size, s.width_mult, s.num_classes, s.stem_stride, pre, post, flops,
                      pre_params, post_params, params)
