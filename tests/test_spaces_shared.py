"""Checks every registered search space gets by registering, and a toy space registered here, in this file alone,
that runs shrink -> search -> train through the package's stages.

Independent references: FLOPs by torch's counter on the meta device, the angle by concatenating the weight vector
path by path, the network by running the supernet path it comes from.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pytest
import torch
from torch import nn

from anglenas.abs.angle import ArchAngles
from anglenas.config import parse_config
from anglenas.flops import FlopsTable
from anglenas.operations import Operations, load_operations
from anglenas.spaces import get_space, register_space, space_names
from anglenas.spaces.base import SearchSpace, ShrinkDefaults

# -- a toy space, defined and registered in this file only ------------------------------------------------------


class ToySuperNet(nn.Module):
    """Stem conv, one choice (conv 3x3 / conv 5x5 / skip) per site, pooling, linear."""

    num_instances = 1

    def __init__(self, space: "ToySpace") -> None:
        super().__init__()
        c = space.channels
        self.stem = nn.Conv2d(3, c, 3, space.stem_stride, 1, bias=False)
        self.layers = nn.ModuleList(nn.ModuleList([nn.Conv2d(c, c, 3, 1, 1, bias=False),
                                                   nn.Conv2d(c, c, 5, 1, 2, bias=False)])
                                    for _ in range(space.num_sites))
        self.classifier = nn.Linear(c, space.num_classes)

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        for layer, op in zip(self.layers, arch):
            x = x if op == SKIP else torch.relu(layer[op](x))
        return self.classifier(x.mean((2, 3)))

    def fixed_weights(self) -> list[torch.Tensor]:
        return [self.stem.weight, self.classifier.weight]

    def choice_weights(self, site: int, op: int, instance: int = 0) -> list[torch.Tensor]:
        return [] if op == SKIP else [self.layers[site][op].weight]


class ToyNetwork(nn.Module):
    def __init__(self, space: "ToySpace", arch: Sequence[int]) -> None:
        super().__init__()
        c = space.channels
        self.stem = nn.Conv2d(3, c, 3, space.stem_stride, 1, bias=False)
        self.layers = nn.ModuleDict({str(s): nn.Conv2d(c, c, 3 + 2 * op, 1, 1 + op, bias=False)
                                     for s, op in enumerate(arch) if op != SKIP})
        self.classifier = nn.Linear(c, space.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        for layer in self.layers.values():
            x = torch.relu(layer(x))
        return self.classifier(x.mean((2, 3)))


SKIP = 2


@dataclass(frozen=True)
class ToySpace(SearchSpace):
    name: str = "toy"
    sites: int = 3
    width_mult: float = 1.0
    input_size: int = 32
    num_classes: int = 10
    stem_stride: int = 1
    published: Mapping = field(default_factory=lambda: {"TOY_BEST": [1, 1, 0]}, compare=False, hash=False)
    op_names = ("conv_3x3", "conv_5x5", "skip")
    shrink = ShrinkDefaults(drop_rule="per_layer", drops_per_round=3, max_rounds=2, max_flops=None,
                            lr_horizon_epochs=4, init="default", first_stage_epochs=1, other_stage_epochs=1, lr=0.1)

    @property
    def channels(self) -> int:
        return max(2, round(8 * self.width_mult))

    def initial_operations(self) -> list[list[int]]:
        return [[0, 1, 2] for _ in range(self.sites)]

    def scaled(self, width_mult=1.0, input_size=None, num_classes=None, stem_stride=None, depth=None) -> "ToySpace":
        self._no_depth(depth)
        return dataclasses.replace(self, width_mult=width_mult, input_size=input_size or self.input_size,
                                   num_classes=num_classes or self.num_classes,
                                   stem_stride=stem_stride or self.stem_stride)

    def supernet(self) -> nn.Module:
        return ToySuperNet(self)

    def network(self, arch, dropout: float = 0.0) -> nn.Module:
        return ToyNetwork(self, arch)

    def path_state_dict(self, supernet_state, arch) -> dict[str, torch.Tensor]:
        out = {}
        for key, value in supernet_state.items():
            parts = key.split(".")
            if parts[0] != "layers":
                out[key] = value
            elif int(parts[2]) == arch[int(parts[1])]:
                out[f"layers.{parts[1]}.weight"] = value
        return out

    def flops_table(self) -> FlopsTable:
        c, res = self.channels, self.input_size // self.stem_stride
        pre = 3 * c * 9 * res * res
        post = (2 * c - 1) * self.num_classes
        per_op = [c * c * 9 * res * res, c * c * 25 * res * res, 0]
        params = [c * c * 9, c * c * 25, 0]
        return FlopsTable(self.name, self.input_size, self.width_mult, self.num_classes, self.stem_stride, pre, post,
                          [list(per_op) for _ in range(self.sites)], 3 * c * 9, (c + 1) * self.num_classes,
                          [list(params) for _ in range(self.sites)])


@register_space
def toy() -> ToySpace:
    return ToySpace()


# -- the shared checks ------------------------------------------------------------------------------------------

def small(name: str) -> SearchSpace:
    """Every space at a size the CPU handles in a second: narrow, 32x32, 10 classes, small-input stem."""
    return get_space(name).scaled(0.25, 32, 10, 1)


def random_archs(space: SearchSpace, n: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    ops = space.initial_operations()
    return [space.check_arch(space.random_arch(ops, rng)) for _ in range(n)]


@pytest.mark.parametrize("name", space_names())
def test_flops_table_equals_a_counted_forward(name):
    space = small(name)
    table = space.flops_table()
    for arch in random_archs(space, 3):
        assert table.arch_flops(arch) == space.counted_flops(arch)


def direct_angle(model, base, space, arch) -> float:
    """arccos of the cosine of V(W0, a) and V(W, a) concatenated path by path (no block statistics)."""
    params = {id(p): n for n, p in model.named_parameters()}
    paths = space.angle_paths if space.angle_paths is not None else (tuple(range(space.num_sites)),)
    parts = list(model.fixed_weights())
    for c in range(model.num_instances):
        for path in paths:
            if any(arch[s] in space.path_breakers for s in path):
                continue
            for s in path:
                parts += model.choice_weights(s, arch[s], c)

    def vector(weights_of):
        return torch.cat([weights_of(w).reshape(-1).double() for w in parts])

    v = vector(lambda w: w.detach())
    v0 = vector(lambda w: base[params[id(w)]] if id(w) in params else w.detach())
    return float(torch.arccos(torch.dot(v0, v) / (v0.norm() * v.norm())))


@pytest.mark.parametrize("name", space_names())
def test_block_angle_equals_the_concatenated_vector(name):
    space = small(name)
    torch.manual_seed(0)
    model = space.supernet()
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + 0.3 * torch.rand_like(p)).add_(0.05 * torch.randn_like(p))
    archs = random_archs(space, 4, seed=1)
    got = ArchAngles(model, base, space).angles(np.array(archs)).tolist()
    for arch, theta in zip(archs, got):
        assert theta == pytest.approx(direct_angle(model, base, space, arch), abs=1e-7)


@pytest.mark.parametrize("name", space_names())
def test_network_runs_like_its_supernet_path(name):
    space = small(name)
    torch.manual_seed(0)
    supernet = space.supernet().eval()
    with torch.no_grad():
        for m in supernet.modules():  # non-trivial BN statistics, so a wrong mapping shows
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, space.input_size, space.input_size)
    for arch in random_archs(space, 2, seed=2):
        net = space.network(arch).eval()
        net.load_state_dict(space.path_state_dict(supernet.state_dict(), arch))
        with torch.no_grad():
            expected = supernet(x, arch)
            assert torch.allclose(net(x), expected, atol=1e-5)


@pytest.mark.parametrize("name", space_names())
def test_operations_file_round_trip(name, tmp_path):
    space = get_space(name)
    full = Operations.full(space)
    shrunk = Operations(space, [site[: max(1, len(site) // 2)] for site in full.ops])
    for ops in (full, shrunk):
        ops.save(tmp_path / "ops.json")
        back = load_operations(tmp_path / "ops.json")
        assert back.space.name == name and back.ops == ops.ops


@pytest.mark.parametrize("name", space_names())
def test_samplers_draw_legal_architectures(name):
    space = get_space(name)
    ops = [site[:2] if len(site) > 2 else site for site in space.initial_operations()]
    allowed = [set(site) for site in ops]
    sampler = space.train_sampler(ops, seed=0)
    for step in range(5):
        for path in sampler.paths(step):
            paths = path if len(path) and isinstance(path[0], (list, tuple)) else [path]  # one arch per cell
            for arch in paths:
                space.check_arch(arch)
                assert all(op in a for op, a in zip(arch, allowed))
    site = next(i for i, s in enumerate(ops) if len(s) > 1)
    children = space.draw_children(ops, np.random.default_rng(0), site, ops[site][-1], 20)
    assert children.shape == (20, space.num_sites) and (children[:, site] == ops[site][-1]).all()
    for arch in children:
        assert all(op in a for op, a in zip(arch.tolist(), allowed))


# -- the toy space through the stages ---------------------------------------------------------------------------

def test_toy_space_runs_shrink_search_train(tmp_path):
    from search_common import search_in_process

    from anglenas.stages.shrink import ShrinkConfig, Shrinker
    from anglenas.stages.train import FinalTrainConfig, FinalTrainer

    shrink = parse_config(ShrinkConfig, ["--space", "toy", "--dataset", "embedded", "--batch_size", "64",
                                         "--sample_num", "4", "--stop_threshold", "10", "--workers", "0",
                                         "--device", "cpu", "--save", str(tmp_path / "shrink")])
    ops = Shrinker(shrink).run()
    assert ops.space.name == "toy" and ops.ops == load_operations(tmp_path / "shrink" / "operations.json").ops
    assert [len(site) for site in ops.ops] == [2, 2, 2]  # one round of the per-layer rule

    result = search_in_process([
        "--operations_path", str(tmp_path / "shrink" / "operations.json"), "--dataset", "embedded",
        "--batch_size", "64", "--epochs", "1", "--bn_images", "64", "--bn_batch_size", "32", "--val_images", "100",
        "--population_num", "4", "--select_num", "2", "--crossover_num", "1", "--max_epochs", "2",
        "--max_flops", "1e12", "--device", "cpu", "--workers", "0", "--save", str(tmp_path / "search")])
    assert result["space"] == "toy" and len(result["top"]) == 2
    best = result["top"][0]["arch"]
    assert all(op in site for op, site in zip(best, ops.ops))

    train = parse_config(FinalTrainConfig, ["--arch", str(tmp_path / "search" / "search_result.json"),
                                            "--dataset", "embedded", "--epochs", "1", "--batch_size", "64",
                                            "--lr", "0.05", "--eval_limit", "100", "--workers", "0", "--device",
                                            "cpu", "--save", str(tmp_path / "train")])
    summary = FinalTrainer(train).run()
    assert summary["space"] == "toy" and summary["arch"] == best and 0 <= summary["top1"] <= 100
    assert json.loads((tmp_path / "train" / "summary.json").read_text())["arch"] == best
