"""The SPOS ShuffleNetV2 space against hand-derived numbers: channel split, block and architecture FLOPs, the
angle through the weight protocol, and the supernet -> network weight mapping."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from anglenas.abs.angle import ArchAngles, snapshot
from anglenas.errors import UserError
from anglenas.spaces import get_space
from anglenas.spaces.shufflenetv2.model import ShuffleBlock, channel_split, make_block
from anglenas.spaces.shufflenetv2.space import ShuffleNetV2Space

torch.set_num_threads(1)  # tiny tensors: extra threads only contend for the shared CPUs

SPOS = (2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3)


def small_space() -> ShuffleNetV2Space:
    """The small-input variant: width 0.25 (8, 16, 40, 80, 160 channels, head 256), stem stride 1, 10 classes,
    16x16 inputs (stages at 8, 4, 2, 1)."""
    return get_space("shufflenetv2").scaled(0.25, 16, 10, 1)


def test_registered_space_matches_spec_layout():
    space = get_space("shufflenetv2")
    assert space.op_names == ("shufflenet_3x3", "shufflenet_5x5", "shufflenet_7x7", "xception_3x3")
    assert space.initial_operations() == [[0, 1, 2, 3]] * 20
    outs = [64] * 4 + [160] * 4 + [320] * 8 + [640] * 4
    ins = [16, 64, 64, 64, 64, 160, 160, 160, 160] + [320] * 8 + [640] * 3
    res = [112, 56, 56, 56, 56, 28, 28, 28, 28] + [14] * 8 + [7] * 3
    strides = [2, 1, 1, 1] * 2 + [2] + [1] * 7 + [2, 1, 1, 1]
    assert [(s.inp, s.oup, s.input_res, s.stride) for s in space.sites] == list(zip(ins, outs, res, strides))
    assert space.published["SPOS_SHUFFLENETV2"] == list(SPOS)
    assert space.shrink.drop_rule == "global" and space.shrink.max_flops == 330e6


def test_channel_split_is_the_even_odd_permutation():
    x = torch.arange(8.0).reshape(1, 8, 1, 1).expand(2, 8, 3, 3)
    even, odd = channel_split(x)
    assert even[0, :, 0, 0].tolist() == [0, 2, 4, 6]
    assert odd[0, :, 0, 0].tolist() == [1, 3, 5, 7]
    block = ShuffleBlock(8, 8, 1, 3)  # stride 1: the even half passes through unchanged, first
    out = block(torch.randn(2, 8, 5, 5).index_copy(1, torch.tensor([0, 2, 4, 6]), torch.full((2, 4, 5, 5), 7.0)))
    assert torch.equal(out[:, :4], torch.full((2, 4, 5, 5), 7.0))


def hooked_macs(module: nn.Module, x: torch.Tensor) -> int:
    """MACs of every Conv2d / Linear in a forward pass of one image, counted from the real output shapes."""
    total = []

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            total.append(out[0].numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        else:
            total.append(m.in_features * m.out_features)

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        module.eval()(x)
    for h in handles:
        h.remove()
    return sum(total)


@pytest.mark.parametrize("site", [0, 1, 4, 16, 19])  # stride 2 and stride 1 blocks of several widths
def test_block_flops_match_a_counted_forward_pass(site):
    space = small_space()
    spec = space.sites[site]
    table = space.flops_table()
    x = torch.randn(1, spec.inp, spec.input_res, spec.input_res)
    for op in range(4):
        block = make_block(op, spec)  # the stand-alone network's block
        assert table.layers[site][op] == hooked_macs(block, x)
        assert table.layer_params[site][op] == sum(p.numel() for p in block.parameters())


def test_table_agrees_with_counted_flops_of_random_archs():
    rng = np.random.default_rng(0)
    for space in (get_space("shufflenetv2"), small_space()):
        table = space.flops_table()
        arch = [int(op) for op in rng.integers(0, 4, 20)]
        assert table.arch_flops(arch) == space.counted_flops(arch)
    net = small_space().network(SPOS)
    assert small_space().flops_table().arch_flops(SPOS) == hooked_macs(net, torch.randn(1, 3, 16, 16))
    assert small_space().flops_table().arch_params(SPOS) == sum(p.numel() for p in net.parameters())


def hand_flops(arch) -> int:
    """FLOPs of an architecture at 224x224, 1000 classes, derived by hand from the block structure (MACs of convs;
    the bias-free classifier in * out)."""
    total = 3 * 16 * 9 * 112 ** 2 + 640 * 1024 * 7 ** 2 + 1024 * 1000
    stages = [(16, 64, 112), (64, 160, 56), (160, 320, 28), (320, 640, 14)]
    sites = [s for (i, o, r), n in zip(stages, (4, 4, 8, 4)) for s in [(i, o, r, 2)] + [(o, o, r // 2, 1)] * (n - 1)]
    for op, (i, o, r, stride) in zip(arch, sites):
        m = o // 2
        if stride == 1:  # main branch on the odd half: h = o / 2 channels in and out, mid = h
            h, area = o // 2, r * r
            if op < 3:
                k = (3, 5, 7)[op]
                total += (h * m + m * k * k + m * h) * area
            else:
                total += (h * 9 + h * m + m * 9 + m * m + m * 9 + m * h) * area
        else:  # projection i -> i at r/2, main i -> o - i
            area, half = r * r, (r // 2) ** 2
            k = (3, 5, 7, 3)[op]
            total += (i * k * k + i * i) * half
            if op < 3:
                total += i * m * area + (m * k * k + m * (o - i)) * half
            else:
                total += (i * 9 + i * m + m * 9 + m * m + m * 9 + m * (o - i)) * half
    return total


def test_published_architecture_flops_against_hand_derivation():
    space = get_space("shufflenetv2")
    table = space.flops_table()
    assert table.arch_flops(SPOS) == hand_flops(SPOS) == 322_918_720  # SPOS README: 323M
    mmrazor = space.published["MMRAZOR_SPOS_SHUFFLENETV2"]
    assert table.arch_flops(mmrazor) == hand_flops(mmrazor)
    assert round(table.arch_params(mmrazor) / 1e6, 2) == 3.35  # MMRazor's table: 3.35M params
    # cheapest / dearest architecture: per site the op that changes the hand count least / most
    deltas = [[hand_flops([op if j == i else 0 for j in range(20)]) - hand_flops([0] * 20) for op in range(4)]
              for i in range(20)]
    lo, hi = table.bounds(space.initial_operations())
    assert lo == hand_flops([0] * 20) + sum(min(d) for d in deltas)
    assert hi == hand_flops([0] * 20) + sum(max(d) for d in deltas)
    assert lo < space.shrink.max_flops < hi  # the 330M limit cuts the space


def test_angle_through_protocol_equals_direct_concatenation():
    space = small_space()
    torch.manual_seed(0)
    model = space.supernet()
    base = snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p) * p.std().clamp_min(0.1))
    rng = np.random.default_rng(1)
    archs = rng.integers(0, 4, (5, 20))
    got = ArchAngles(model, base, space).angles(archs)
    now = model.state_dict()
    for arch, angle in zip(archs, got):
        # every conv and linear weight of the path's network (4-D and 2-D tensors; BN is 1-D), W0 and W
        w0 = space.path_state_dict(base, arch)
        w1 = space.path_state_dict(now, arch)
        keys = [k for k, v in w1.items() if k.endswith("weight") and v.dim() in (2, 4)]
        v0 = torch.cat([w0[k].reshape(-1) for k in keys]).double()
        v1 = torch.cat([w1[k].reshape(-1) for k in keys]).double()
        direct = math.acos(float(v0 @ v1 / (v0.norm() * v1.norm())))
        assert float(angle) == pytest.approx(direct, rel=1e-9)


def test_network_from_supernet_path_gives_same_output_in_eval_mode():
    space = small_space()
    torch.manual_seed(0)
    supernet = space.supernet()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        supernet.train()
        supernet(x, SPOS)  # running BN statistics away from their initial values
    net = space.network(SPOS, dropout=0.1)
    net.load_state_dict(space.path_state_dict(supernet.state_dict(), SPOS))
    supernet.eval()
    net.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), supernet(x, SPOS), atol=1e-6)


def test_supernet_bn_has_no_affine_parameters_as_the_authors():
    """The authors' supernet builds every BN with ``affine=False``: its only parameters are conv and linear
    weights; the stand-alone network keeps affine BN, two parameters per BN channel more along the path."""
    space = get_space("shufflenetv2")
    with torch.device("meta"):
        supernet, net = space.supernet(), space.network(SPOS)
    assert all(p.dim() in (2, 4) for p in supernet.parameters())
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.affine for m in bns)
    path = space.path_state_dict(supernet.state_dict(), SPOS)
    path_params = sum(v.numel() for k, v in path.items() if k.endswith("weight") and v.dim() in (2, 4))
    assert sum(p.numel() for p in net.parameters()) == path_params + 2 * sum(m.num_features for m in bns)
    # the whole supernet: stem 16 + head 1024 BN channels, and per site the BN channels of its 4 ops
    bn_channels = 16 + 1024
    stages = [(16, 64), (64, 160), (160, 320), (320, 640)]
    for (i, o), n in zip(stages, (4, 4, 8, 4)):
        for stride, inp in [(2, i)] + [(1, o)] * (n - 1):
            branch_in, mid = (inp // 2 if stride == 1 else inp), o // 2
            proj = 2 * inp if stride == 2 else 0  # dw BN + pw BN of the projection branch
            shuffle = mid + mid + (o - branch_in)  # 1x1, k x k dw, 1x1 to the rest of the output
            xception = branch_in + 4 * mid + (o - branch_in)  # dw, 1x1, dw, 1x1, dw, 1x1
            bn_channels += 3 * (proj + shuffle) + proj + xception
    assert 2 * bn_channels == 101_472  # the affine parameters the authors' supernet does not have


def test_bad_input_is_one_clear_error():
    space = get_space("shufflenetv2")
    with pytest.raises(UserError, match="space has 20"):
        space.check_arch(SPOS[:-1])
    with pytest.raises(UserError, match="not allowed"):
        space.check_arch((4,) + SPOS[1:])
    with pytest.raises(UserError, match="larger width"):
        space.scaled(0.05)
