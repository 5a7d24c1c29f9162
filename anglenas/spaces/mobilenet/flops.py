"""The FLOPs table of a MobileNet space, in closed form (identity, op -1, costs 0)."""
from __future__ import annotations

import math

import torch
from torch import nn

from anglenas.flops import FlopsTable, chain_flops
from anglenas.spaces.mobilenet.blocks import BLOCK_KEYS, MobileLayout, add_ends, make_block


def measure_table(s: MobileLayout) -> FlopsTable:
    """FLOPs / params of the stem and first block (``pre``), the head and classifier (``post``) and every block of
    every layer, counted on the meta device (shapes only)."""
    with torch.device("meta"):
        ends = nn.Module()
        add_ends(ends, s, nn.Identity())
        pre, pre_params = chain_flops(nn.Sequential(ends.stem, ends.first_block), s.input_size)
        final_res = math.ceil(s.layers[-1].input_res / s.layers[-1].stride)
        post, post_params = chain_flops(nn.Sequential(ends.head, ends.classifier), final_res)
        flops, params = [], []
        for layer in s.layers:
            costs = [chain_flops(make_block(op, layer.inp, layer.oup, layer.stride), layer.input_res)
                     for op in range(len(BLOCK_KEYS))]
            flops.append([c[0] for c in costs] + [0])  # identity
            params.append([c[1] for c in costs] + [0])
    return FlopsTable(s.name, s.input_size, s.width_mult, s.num_classes, s.stem_stride, pre, post, flops,
                      pre_params, post_params, params)
