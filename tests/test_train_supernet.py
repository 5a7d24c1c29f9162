"""Supernet training: LR schedule, parameter groups, untouched unsampled ops, FairNAS step, path samplers."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from anglenas.errors import UserError
from anglenas.spaces.mobilenet import FAIRNAS_SPACE, GPU_SPACE
from anglenas.spaces.mobilenet.supernet import MobileSuperNet
from anglenas.train.optim import linear_lr, param_groups
from anglenas.train.samplers import FairPathSampler, UniformPathSampler
from anglenas.train.supernet import SupernetTrainConfig, SupernetTrainer

TINY = GPU_SPACE.scaled(0.25, 16, 10, stem_stride=1)


class FixedBatches:
    """A stream that always yields the same batch."""

    steps_per_epoch, per_rank_batch = 10, 8

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x, self.y = torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)

    def batches(self, start, n):
        for _ in range(n):
            yield self.x, self.y


class FixedPaths:
    def __init__(self, paths):
        self._paths = paths

    def paths(self, step):
        return self._paths


def test_linear_lr_matches_the_original_lambda():
    lr0, min_lr, total = 0.25, 5e-4, 1000
    delta = total / (1 - min_lr / lr0)  # the original's LambdaLR: factor 1 - step / delta, frozen at the floor
    for step in (0, 1, 250, 999, 1000, 1500):
        assert linear_lr(step, lr0, total, min_lr) == pytest.approx(max(lr0 * (1 - step / delta), min_lr))
    assert linear_lr(1000, lr0, total, min_lr) == pytest.approx(min_lr)
    assert linear_lr(500, 0.5, 1000) == pytest.approx(0.25)


def test_param_groups_decay_convs_and_classifier_only():
    model = MobileSuperNet(TINY)
    decay, no_decay = param_groups(model, 4e-5)
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [p for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in (m.weight, m.bias)]
    assert {id(p) for p in decay["params"]} == {id(p) for p in convs + [model.classifier.weight,
                                                                         model.classifier.bias]}
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in bns}
    assert decay["weight_decay"] == 4e-5 and no_decay["weight_decay"] == 0.0


def test_unsampled_ops_get_no_update_no_momentum_no_decay():
    torch.manual_seed(0)
    model = MobileSuperNet(TINY)
    before = copy.deepcopy(model.state_dict())
    path = [0] * 21
    cfg = SupernetTrainConfig(batch_size=8, lr=0.1, weight_decay=0.1, device="cpu", channels_last=False)
    trainer = SupernetTrainer(model, FixedPaths([path]), FixedBatches(), cfg, 100, torch.device("cpu"))
    trainer.train(0, 3)
    after = model.state_dict()
    for name, value in after.items():
        sampled = ".ops.0." in name or ".ops." not in name
        if ".ops." in name and not sampled:
            assert torch.equal(value, before[name]), name  # weights and BN statistics untouched
    assert not torch.equal(after["layers.3.ops.0.conv.0.weight"], before["layers.3.ops.0.conv.0.weight"])
    with_state = {id(p) for p in trainer.optimizer.state}
    for name, p in model.named_parameters():
        assert (id(p) in with_state) == (".ops.0." in name or ".ops." not in name), name


def test_fairnas_step_accumulates_the_paths_then_clips_and_steps():
    torch.manual_seed(0)
    space = FAIRNAS_SPACE.scaled(0.25, 16, 10, stem_stride=1)
    model = MobileSuperNet(space)
    reference = copy.deepcopy(model)
    paths = [[0] * 19, [3] * 19]
    cfg = SupernetTrainConfig(batch_size=8, lr=0.2, momentum=0.9, weight_decay=0.01, label_smoothing=0.1,
                              grad_clip=1e-3, device="cpu", channels_last=False)
    batches = FixedBatches()
    trainer = SupernetTrainer(model, FixedPaths(paths), batches, cfg, 100, torch.device("cpu"))
    trainer.train(0, 1)
    # by hand: sum the gradients of both paths, clip each entry to +-1e-3, one SGD step (first momentum = grad)
    reference.train()
    for path in paths:
        nn.CrossEntropyLoss(label_smoothing=0.1)(reference(batches.x, path), batches.y).backward()
    w = reference.stem[0].weight
    expected = w - 0.2 * (w.grad.clamp(-1e-3, 1e-3) + 0.01 * w)
    assert torch.allclose(model.stem[0].weight, expected, atol=1e-7)
    bn = reference.layers[0].ops[0].conv[1]
    expected_bn = bn.weight - 0.2 * bn.weight.grad.clamp(-1e-3, 1e-3)  # no weight decay on BN
    assert torch.allclose(model.layers[0].ops[0].conv[1].weight, expected_bn, atol=1e-7)


def test_uniform_sampler_is_a_function_of_seed_and_step():
    ops = [[0, 1, 2], [3, -1], [5]]
    a, b = UniformPathSampler(ops, 7), UniformPathSampler(ops, 7)
    assert [a.paths(s) for s in range(20)] == [b.paths(s) for s in range(20)]
    paths = np.array([a.paths(s)[0] for s in range(3000)])
    assert np.allclose(np.bincount(paths[:, 0]) / 3000, 1 / 3, atol=0.04)
    assert np.isclose((paths[:, 1] == -1).mean(), 0.5, atol=0.04)  # identity is one of the uniform choices


def test_fair_sampler_uses_every_op_once_per_step():
    ops = [[0, 4], [1, 5], [2, 3]]
    sampler = FairPathSampler(ops, 0)
    for step in range(10):
        paths = sampler.paths(step)
        assert len(paths) == 2
        for layer, layer_ops in enumerate(ops):
            assert sorted(p[layer] for p in paths) == sorted(layer_ops)


def test_fair_sampler_needs_equal_op_counts():
    with pytest.raises(UserError, match="same number of ops in every layer"):
        FairPathSampler([[0, 1], [2]], 0)


def test_zero_init_residual_starts_the_90_residual_blocks_as_identity_and_keeps_w0():
    """At width 1 the GPU space has 15 residual layers (stride 1, in == out: layers 1-3, 5-7, 9-11, 13-15, 17-19;
    layer 12 is 112 -> 128) of 6 blocks each: exactly 90 last-BN gammas become 0, and the conv weights (the angle's
    W0) equal those of the same seed without the option."""
    from anglenas.nn.init import init_weights

    models = []
    for zero in (False, True):
        torch.manual_seed(3)
        model = MobileSuperNet(GPU_SPACE)
        init_weights(model, "he_fanout", zero_init_residual=zero)
        models.append(model)
    plain, zeroed = models
    zero_gammas = [name for name, p in zeroed.named_parameters()
                   if name.endswith(".weight") and p.dim() == 1 and not p.any()]
    assert len(zero_gammas) == 90
    assert {int(name.split(".")[1]) for name in zero_gammas} == {1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19}
    assert all(name.endswith("conv.7.weight") for name in zero_gammas)
    for (name, a), b in zip(plain.named_parameters(), zeroed.parameters()):
        if a.dim() == 4:
            assert torch.equal(a, b), name
    zeroed.eval()
    layer = zeroed.layers[1]
    h = torch.randn(2, 32, 28, 28)
    assert torch.allclose(layer(h, 0), h)  # a residual block starts as the identity


def test_uneven_fairness_fills_each_layer_as_evenly_as_its_op_count_allows():
    """3 paths a step; a 2-op layer trains one op twice and the other once, a 1-op layer its op three times."""
    sampler = FairPathSampler([[0, 1, 2], [3, 4], [5]], seed=0, uneven=True)
    for step in range(20):
        paths = sampler.paths(step)
        assert len(paths) == 3
        columns = list(zip(*paths))
        assert sorted(columns[0]) == [0, 1, 2] and sorted(columns[2]) == [5, 5, 5]
        assert sorted(set(columns[1])) == [3, 4] and sorted(columns[1].count(op) for op in (3, 4)) == [1, 2]
    equal = [[0, 1], [2, 3]]  # equal counts: the strict sampler's paths, draw for draw
    assert [FairPathSampler(equal, 1, uneven=True).paths(s) for s in range(5)] == \
           [FairPathSampler(equal, 1).paths(s) for s in range(5)]
