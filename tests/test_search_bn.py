"""Exact BN recalibration: running statistics equal averages computed directly from the BN inputs."""
import copy

import torch
from torch import nn

from anglenas.searchers.spos.bn import batchnorms, recalibrate_bn
from anglenas.spaces.mobilenet import GPU_SPACE
from anglenas.spaces.mobilenet.supernet import MobileSuperNet

TINY = GPU_SPACE.scaled(0.25, 16, 10, stem_stride=1)
ARCH = [0, 1, -1, 2, 3, -1, 4, 5, 0, -1, 1, 2, 3, 4, 5, 0, 1, -1, 2, 3, 4]


def _batches(n=4, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 16, 16, generator=g) * 2 + 1, torch.zeros(size, dtype=torch.long))
            for _ in range(n)]


def _model():
    torch.manual_seed(0)
    model = MobileSuperNet(TINY)
    for bn in batchnorms(model):  # stale statistics that must not survive
        bn.running_mean.fill_(3.0)
        bn.running_var.fill_(7.0)
    return model


def test_stem_statistics_equal_the_mean_of_the_batch_statistics_of_the_conv_output():
    model, batches = _model(), _batches()
    seen = recalibrate_bn(model, ARCH, batches)
    conv, bn = model.stem[0], model.stem[1]
    with torch.no_grad():
        outs = [nn.functional.conv2d(x.double(), conv.weight.double(), stride=1, padding=1) for x, _ in batches]
    mean = torch.stack([o.mean((0, 2, 3)) for o in outs]).mean(0)
    var = torch.stack([o.var((0, 2, 3)) for o in outs]).mean(0)  # unbiased per batch, as BN tracks
    assert seen == 32
    torch.testing.assert_close(bn.running_mean.double(), mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var.double(), var, rtol=1e-4, atol=1e-5)
    # equal batches: the mean of batch means is the mean over all images
    torch.testing.assert_close(mean, torch.cat(outs).mean((0, 2, 3)), rtol=1e-9, atol=1e-9)


def test_every_bn_on_the_path_holds_the_average_of_its_inputs_batch_statistics_whatever_the_order():
    model, batches = _model(), _batches()
    # the inputs each BN sees in train mode do not depend on running statistics: record them on a copy
    probe = copy.deepcopy(model).train()
    inputs: dict[str, list[torch.Tensor]] = {}
    for name, m in probe.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_pre_hook(lambda mod, args, name=name: inputs.setdefault(name, []).append(
                args[0].detach().double()))
    with torch.no_grad():
        for x, _ in batches:
            probe(x, ARCH)
    recalibrate_bn(model, ARCH, list(reversed(batches)))  # a cumulative average ignores the order (an EMA would not)
    modules = dict(model.named_modules())
    assert len(inputs) > 40
    for name, xs in inputs.items():
        bn = modules[name]
        torch.testing.assert_close(bn.running_mean.double(), torch.stack([x.mean((0, 2, 3)) for x in xs]).mean(0),
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var.double(), torch.stack([x.var((0, 2, 3)) for x in xs]).mean(0),
                                   rtol=1e-4, atol=1e-5)
        assert int(bn.num_batches_tracked) == len(batches)
    # BNs off the path are reset (mean 0, var 1), momenta restored, model left in eval mode
    off_path = model.layers[0].ops[5].conv[1]
    assert torch.all(off_path.running_mean == 0) and torch.all(off_path.running_var == 1)
    assert all(bn.momentum == 0.1 for bn in batchnorms(model)) and not model.training


def test_recalibration_does_not_depend_on_the_previous_candidate():
    model, batches = _model(), _batches()
    other = [1] * 21
    recalibrate_bn(model, other, batches)
    recalibrate_bn(model, ARCH, batches)
    fresh = _model()
    recalibrate_bn(fresh, ARCH, batches)
    for a, b in zip(batchnorms(model), batchnorms(fresh)):
        torch.testing.assert_close(a.running_mean, b.running_mean)
        torch.testing.assert_close(a.running_var, b.running_var)
