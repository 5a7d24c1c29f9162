"""The DARTS space of ABS: warm-up, angle, FLOPs, sampling, weight mapping, against independent numbers."""
import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import anglenas.spaces.darts.space  # noqa: F401  (registers "darts" until spaces/__init__ imports it)
from anglenas.abs.angle import ArchAngles
from anglenas.errors import UserError
from anglenas.spaces import get_space
from anglenas.spaces.darts.genotypes import DARTS_ABS, PDARTS_ABS
from anglenas.spaces.darts.model_eval import NetworkImageNet
from anglenas.spaces.darts.supernet import cell_specs, final_layout, warmup_schedule

torch.set_num_threads(1)

# upstream's cell by hand: edge of node j <- state k is OFFSET[j] + k
OFFSET = {2: 0, 3: 2, 4: 5, 5: 9}
NODE_PATHS = [[0, 2, 3, 4, 5], [0, 2, 3, 5], [0, 2, 4, 5], [0, 2, 5], [0, 3, 4, 5], [0, 3, 5], [0, 4, 5], [0, 5],
              [1, 2, 3, 4, 5], [1, 2, 3, 5], [1, 2, 4, 5], [1, 2, 5], [1, 3, 4, 5], [1, 3, 5], [1, 4, 5], [1, 5]]
NONE, MAX, AVG, SKIP, SEP3, SEP5, DIL3, DIL5 = range(8)


@pytest.fixture(scope="module")
def tiny():
    """C=8 on 32x32 inputs, 10 classes: cells at 16, 8, 4 pixels."""
    return get_space("darts").scaled(8 / 48, input_size=32, num_classes=10, stem_stride=1)


def test_space_registration_and_defaults():
    space = get_space("darts")
    assert space.op_names == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                              "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    assert space.initial_operations() == [list(range(8))] * 14
    assert space.site_name(3) == "edge 3 (node 3 <- 1)" and space.site_name(13) == "edge 13 (node 5 <- 4)"
    d = space.shrink
    assert (d.drop_rule, d.max_flops, d.lr, d.first_stage_epochs, d.other_stage_epochs, d.lr_horizon_epochs) == (
        "per_layer", None, 0.2, 150, 20, 400)
    assert space.shrink.warmup_epochs == 5 and space.warmup_stages == 11
    assert space.size_of(space.initial_operations()) == 8 ** 14
    assert space.path_breakers == (NONE,)
    assert sorted(space.angle_paths) == sorted(
        tuple(OFFSET[j] + k for k, j in zip(p, p[1:])) for p in NODE_PATHS)
    assert space.published == {"DARTS_ABS": DARTS_ABS, "PDARTS_ABS": PDARTS_ABS}
    assert space.scaled(45 / 48).init_channels == 45
    with pytest.raises(UserError, match="divisible by 32"):
        space.scaled(input_size=200)
    with pytest.raises(UserError, match="edge 2 \\(node 3 <- 0\\)"):
        space.check_arch([0, 0, 9] + [0] * 11)


def test_warmup_order_and_channels(tiny):
    assert warmup_schedule() == [2, 4, 1, 4, 7, 2, 6, 10, 3, 8, 13]
    net = tiny.warmup_supernet()
    assert net.layout == (False, True, True)
    x = torch.randn(1, 3, 32, 32)
    arch = [SEP3, DIL3, SKIP, MAX, AVG, SEP5, NONE, DIL5, NONE, NONE, SEP3, NONE, SKIP, NONE]
    positions = []
    for stage in range(11):
        before = [id(c) for c in net.cells]
        pos = net.insert_cell(seed=stage)
        positions.append(pos)
        assert [id(c) for i, c in enumerate(net.cells) if i != pos] == before  # old cells kept as they were
        assert net(x, arch).shape == (1, 10)
    assert positions == [2, 4, 1, 4, 7, 2, 6, 10, 3, 8, 13]
    assert ["R" if r else "N" for r in net.layout] == list("NNNNRNNNNRNNNN")
    with pytest.raises(ValueError, match="already has 14 cells"):
        net.insert_cell(seed=0)
    assert [c.spec for c in net.cells] == cell_specs(final_layout(), 8, 32, 1)  # the grown net is the final one
    # the original's Network_ImageNet at C=48: cells 0-3 C=48 at 28x28, cell 4 reduces to 96 at 14x14, 5-8 96, cell 9 to
    # 192 at 7x7
    specs = cell_specs(final_layout(), 48)
    C = [s.c for s in specs]
    assert C == [48] * 4 + [96] * 5 + [192] * 5
    assert [s.output_res for s in specs] == [28] * 4 + [14] * 5 + [7] * 5
    # every cell's inputs are its real neighbours' outputs (4C channels), stems give 48
    outs = [48, 48] + [4 * c for c in C]
    assert [(s.c_prev_prev, s.c_prev) for s in specs] == list(zip(outs[:-2], outs[1:-1]))
    assert [i for i, s in enumerate(specs) if s.reduction_prev] == [0, 5, 10]  # FactorizedReduce preprocess0
    assert not any(s.s1_twice for s in specs)


def test_inserted_cell_init_is_seeded_he_fanout(tiny):
    a, b = tiny.warmup_supernet(), tiny.warmup_supernet()
    pa, pb = a.insert_cell(seed=7), b.insert_cell(seed=7)
    assert pa == pb == 2
    for (na, wa), (nb, wb) in zip(a.cells[2].named_parameters(), b.cells[2].named_parameters()):
        assert na == nb and torch.equal(wa, wb)
    z = torch.cat([m.weight.flatten() / math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels))
                   for m in a.cells[2].modules() if isinstance(m, nn.Conv2d)])
    assert z.numel() > 3000 and abs(z.mean().item()) < 0.1 and abs(z.var().item() - 1) < 0.1
    bns = [m for m in a.cells[2].modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns)


def _direct_vector(net, arch):
    """V(W, a) of the original's DARTS/shrinking/angle.py written out: per cell the 16 path vectors, then stems,
    preprocessing, classifier."""
    parts = []
    for cell in net.cells:
        for path in NODE_PATHS:
            vec, alive = [], True
            for k, j in zip(path, path[1:]):
                e = OFFSET[j] + k
                op = arch[e]
                module = cell.edges[e][op]
                if op == NONE:
                    alive = False
                    break
                if op in (MAX, AVG):
                    channels = cell.edges[e][SEP3].op[1].weight.shape[0]
                    vec.append(torch.full((channels * 9,), 1 / 9))
                elif op in (SEP3, SEP5):
                    vec += [module.op[i].weight.flatten() for i in (1, 2, 5, 6)]
                elif op in (DIL3, DIL5):
                    vec += [module.op[i].weight.flatten() for i in (1, 2)]
            if alive:
                parts += vec
    parts += [net.stem0[0].weight, net.stem0[3].weight, net.stem1[1].weight]
    for cell in net.cells:
        p0 = cell.preprocess0
        parts += [p0.conv_1.weight, p0.conv_2.weight] if hasattr(p0, "conv_1") else [p0.op[1].weight]
        parts.append(cell.preprocess1.op[1].weight)
    parts.append(net.classifier.weight)
    return torch.cat([p.detach().flatten().double() for p in parts])


def test_angle_matches_the_concatenated_path_vector(tiny):
    torch.manual_seed(0)
    base = tiny.supernet()
    trained = copy.deepcopy(base)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p) * p.abs().mean())
    archs = np.array([
        [SEP3, DIL3, SKIP, MAX, AVG, SEP5, NONE, DIL5, NONE, NONE, SEP3, NONE, SKIP, NONE],
        [NONE, SEP5, DIL5, SKIP, DIL3, MAX, AVG, SEP3, SEP3, SEP5, DIL3, DIL5, MAX, AVG],
        [SKIP] * 14,  # only fixed weights (a skip on a reduction edge adds nothing either)
        [NONE, NONE] + [SEP3] * 12,  # node 2 dead: every path through it is dropped
    ])
    engine = ArchAngles(trained, {n: p.detach().clone() for n, p in base.named_parameters()}, tiny)
    got = engine.angles(archs).cpu().numpy()
    for arch, angle in zip(archs.tolist(), got):
        v0, v = _direct_vector(base, arch), _direct_vector(trained, arch)
        expected = math.acos(float(v0 @ v / (v0.norm() * v.norm())))
        assert angle == pytest.approx(expected, abs=1e-9)
    assert len(set(np.round(got, 9))) == 4


def _hook_count(net, input_size):
    """Conv MACs (C_in/groups * k*k per output element) + Linear (2*in-1)*out, from a real forward's shapes."""
    total = []

    def conv(m, inputs, out):
        total.append(out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])

    def linear(m, inputs, out):
        total.append((2 * m.in_features - 1) * out.numel())

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(linear)
    with torch.no_grad():
        net.eval()(torch.zeros(1, 3, input_size, input_size))
    return sum(total)


def test_flops_table_matches_a_counted_forward(tiny):
    table = tiny.flops_table()
    rng = np.random.default_rng(0)
    archs = [[SKIP] * 14, [SEP5] * 14, tiny.random_arch(tiny.initial_operations(), rng)]
    for arch in archs:
        net = tiny.network(arch)
        assert table.arch_flops(arch) == _hook_count(net, 32)
        assert table.arch_params(arch) == sum(p.numel() for p in net.parameters())
    assert tiny.counted_flops(archs[-1]) == table.arch_flops(archs[-1])  # the package's counter agrees
    imagenet_stem = get_space("darts").scaled(8 / 48)  # 224 -> 56 -> 28: cells at 28, 14, 7
    arch = [SKIP, SEP3, DIL5, NONE, MAX, SEP5, SKIP, AVG, DIL3, NONE, SEP3, SKIP, NONE, DIL5]
    assert imagenet_stem.flops_table().arch_flops(arch) == imagenet_stem.counted_flops(arch)
    assert table.layers[0][NONE] == table.layers[0][MAX] == 0 and table.layers[4][SKIP] == 0
    assert table.layers[0][SKIP] > 0  # a FactorizedReduce on the reduction cells' input edges


def test_published_genotypes_reproduce_the_papers_flops():
    """The ABS paper's ImageNet cells are C=45 networks: PDARTS_ABS 570.1M, DARTS_ABS 547.6M FLOPs; at C=48 DARTS_ABS
    is 619.7M (thop's count: the auxiliary head does not run)."""
    space = get_space("darts")
    assert space.genotype_channels == 45 and space.init_channels == 48  # genotype networks vs the shrinking supernet
    net = space.network(PDARTS_ABS)
    assert isinstance(net, NetworkImageNet) and net.auxiliary and len(net.cells) == 14
    assert abs(_hook_count(net, 224) - 570.1e6) < 0.05e6
    flops, params = space.genotype_cost("DARTS_ABS")
    assert abs(flops - 547.6e6) < 0.05e6 and 4.5e6 < params < 5.5e6
    wide = space.scaled(space.width_for_channels(PDARTS_ABS, 48))
    assert wide.genotype_channels == 48 and abs(wide.genotype_cost("DARTS_ABS")[0] - 619.7e6) < 0.05e6


def test_genotype_files_are_architectures(tmp_path):
    from anglenas.archs import parse_arch
    from anglenas.spaces.darts.genotypes import save_genotype

    save_genotype(PDARTS_ABS, tmp_path / "genotype.json")
    assert parse_arch(str(tmp_path / "genotype.json")) == ("darts", PDARTS_ABS)
    (tmp_path / "g.txt").write_text(repr(DARTS_ABS))
    assert get_space("darts").read_arch_file(tmp_path / "g.txt") == DARTS_ABS
    (tmp_path / "other.json").write_text('{"format": "anglenas-search-result", "top": []}')
    assert get_space("darts").read_arch_file(tmp_path / "other.json") is None
    assert parse_arch("DARTS_ABS") == ("darts", DARTS_ABS)


def _two_inputs_per_node(arch):
    return [sum(arch[OFFSET[j] + k] != NONE for k in range(j)) for j in range(2, 6)]


def test_train_sampler_obeys_the_two_input_rule():
    space = get_space("darts")
    ops = [[SEP3, DIL5]] * 7 + [[NONE, MAX]] * 4 + [[NONE, SKIP, SEP5]] * 3
    sampler = space.train_sampler(ops, seed=3)
    seen = set()
    for step in range(300):
        (arch,) = sampler.paths(step)
        assert sampler.paths(step) == [arch]  # a function of (seed, step)
        assert _two_inputs_per_node(arch) == [2, 2, 2, 2]
        assert all(op in ops[e] or op == NONE for e, op in enumerate(arch))
        seen.add(tuple(arch))
    assert len(seen) > 100


def test_check_cand_by_hand():
    from anglenas.spaces.darts.space import check_cand

    space = get_space("darts")
    full = space.initial_operations()
    rng = np.random.default_rng(0)
    # node 3 (edges 2, 3, 4) has no none: exactly one of them becomes none; node 2 already legal: untouched
    arch = np.array([[SEP3, DIL3, SEP3, SEP5, DIL3, NONE, NONE, SEP3, MAX, NONE, NONE, NONE, SEP3, AVG]] * 200)
    out = check_cand(arch.copy(), full, rng)
    assert np.all(out[:, :2] == [SEP3, DIL3]) and np.all(out[:, 5:] == arch[0, 5:])
    assert np.all((out[:, 2:5] == NONE).sum(1) == 1)
    assert set(np.flatnonzero(out[:, 2:5] == NONE) % 3) == {0, 1, 2}  # each edge picked sometimes
    # node 2 all none: both edges get a non-none op of their lists
    ops = [[NONE, SEP5], [NONE, DIL3, MAX]] + full[2:]
    arch = np.array([[NONE, NONE] + [SKIP, NONE, SKIP, NONE, NONE, SKIP, SKIP, NONE, NONE, NONE, SKIP, SKIP]] * 50)
    out = check_cand(arch.copy(), ops, rng)
    assert np.all(out[:, 0] == SEP5) and set(out[:, 1]) == {DIL3, MAX}
    assert np.all(out[:, 2:] == arch[0, 2:])


def test_draw_children_force_the_operator():
    space = get_space("darts")
    ops = [[SEP3, DIL5, NONE]] * 14
    children = space.draw_children(ops, np.random.default_rng(1), 5, SEP5, 500)
    assert children.shape == (500, 14) and np.all(children[:, 5] == SEP5)
    nodes = np.array([_two_inputs_per_node(a) for a in children.tolist()])
    assert np.all(nodes[:, [0, 1, 3]] == 2)  # edge 5 feeds node 4: only that node may break the rule
    assert set(nodes[:, 2]) == {2, 3}


def test_supernet_path_equals_child_network(tiny):
    torch.manual_seed(1)
    supernet = tiny.supernet()
    arch = [DIL5, SEP3, AVG, SKIP, NONE, MAX, SEP5, NONE, DIL3, SKIP, NONE, NONE, SEP3, NONE]
    x = torch.randn(4, 3, 32, 32)
    supernet.train()
    supernet(x, arch)  # non-trivial BN running statistics on the path
    supernet.eval()
    child = tiny.network(arch)
    child.load_state_dict(tiny.path_state_dict(supernet.state_dict(), arch), strict=True)
    child.eval()
    with torch.no_grad():
        assert torch.allclose(supernet(x, arch), child(x), atol=1e-6, rtol=0)
        per_cell = np.tile(arch, (14, 1))
        assert torch.equal(supernet(x, per_cell), supernet(x, arch))


@pytest.mark.parametrize("space, flags, decayed", [("darts", [], False), ("darts", ["--decay_classifier"], True),
                                                   ("gpu", [], True)])
def test_shrinking_supernet_decays_the_classifier_as_the_original(tmp_path, space, flags, decayed):
    """The original's weight-decay filter names ``classifier.0``: it decays the MobileNet supernets' classifier but
    misses the DARTS supernet's ``classifier.weight`` / ``.bias``; the DARTS space keeps that by default."""
    from anglenas.config import parse_config
    from anglenas.stages.shrink import DEMO, ShrinkConfig, Shrinker

    cfg = parse_config(ShrinkConfig, ["--space", space, "--demo", "--device", "cpu", "--threads", "1",
                                      "--save", str(tmp_path), *flags], presets={"demo": DEMO})
    trainer = Shrinker(cfg).trainer
    for _ in range(2):  # as built, and after a warm-up's cell insertion gives a fresh optimiser
        names = {id(p): n for n, p in trainer.model.named_parameters()}
        decay, plain = trainer.optimizer.param_groups
        convs = {n for n, p in trainer.model.named_parameters() if p.ndim == 4}
        head = {"classifier.weight", "classifier.bias"}
        assert {names[id(p)] for p in decay["params"]} == convs | (head if decayed else set())
        assert (head <= {names[id(p)] for p in plain["params"]}) != decayed and plain["weight_decay"] == 0
        trainer.reset_optimizer()
