"""NB201 supernet, sampler, block-decomposed angles (vs the directly built vector) and ranking metrics."""
import numpy as np
import pytest
import scipy.stats
import torch

from anglenas.abs.angle import ArchAngles, snapshot
from anglenas.nb201.metrics import kendall_tau, recalibrated_bn, spearman_rho, supernet_accuracy
from anglenas.spaces.nb201.cells import EDGES, NONE, POOL, SKIP, all_cells
from anglenas.spaces.nb201.space import NB201_SPACE, CellPathSampler
from anglenas.spaces.nb201.supernet import NB201SuperNet

pytestmark = pytest.mark.usefixtures("one_thread")


ALL_PATHS = ((0, 3), (0, 2, 3), (0, 1, 2, 3), (0, 1, 3))  # get_arch_angle's paths, written out again here


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = NB201SuperNet(num_classes=10, channels=8, cells_per_stage=2)
    base = snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * p.abs().mean() * torch.randn_like(p))
    return model, base


def direct_vector(model, weights, cells):
    """V(W, a) built as the original does: fixed weights, then path-major over paths and cells."""
    names = {id(p): n for n, p in model.named_parameters()}
    parts = [weights[names[id(w)]].reshape(-1) for w in model.fixed_weights()]
    for path in ALL_PATHS:
        for c, cell in enumerate(model.search_cells):
            edges = [EDGES.index((b, a)) for a, b in zip(path, path[1:])]
            if any(cells[c][e] == NONE for e in edges):
                continue
            for e in edges:
                op = cells[c][e]
                if op == POOL:
                    parts.append(torch.full((cell.channels * 9,), 1 / 9))
                elif op != SKIP:
                    parts.append(weights[names[id(cell.edges[e][op].op[1].weight)]].reshape(-1))
    return torch.cat([p.double() for p in parts])


def direct_angle(model, base, cells):
    now = {n: p.detach() for n, p in model.named_parameters()}
    v0, v = direct_vector(model, base, cells), direct_vector(model, now, cells)
    return float(torch.arccos(v0 @ v / (v0.norm() * v.norm()))), float(v.norm())


def test_block_angles_match_the_direct_formula(trained):
    model, base = trained
    angles = ArchAngles(model, base, NB201_SPACE)
    cells = all_cells()
    theta = angles.angles(cells)
    assert theta.shape == (15625,) and torch.isfinite(theta).all()
    rng = np.random.default_rng(0)
    for i in rng.choice(len(cells), 12, replace=False).tolist() + [0, 15624]:
        expect, norm = direct_angle(model, base, [tuple(cells[i])] * 6)
        assert abs(float(theta[i]) - expect) < 1e-5
        assert abs(float(angles.magnitudes(cells[i:i + 1])[0]) - norm) < 1e-5 * norm
    sampler = CellPathSampler(6, seed=3)
    per_cell = [sampler.paths(s)[0] for s in range(5)]
    got = angles.angles(np.array(per_cell))
    for path, value in zip(per_cell, got.tolist()):
        assert abs(value - direct_angle(model, base, path)[0]) < 1e-5


def test_sampler_each_cell_own_path_no_dead_node():
    sampler = CellPathSampler(15, seed=1)
    cells = np.array([c for s in range(200) for c in sampler.paths(s)[0]])  # [3000, 6]
    assert len({tuple(c) for c in sampler.paths(0)[0]}) > 10  # cells draw independently
    assert (cells[:, 0] != NONE).all()  # node 1 has one input
    assert ((cells[:, [1, 2]] != NONE).any(1)).all() and ((cells[:, [3, 4, 5]] != NONE).any(1)).all()
    # node 2: uniform over the 24 non-(none, none) pairs -> P(edge 2<-0 = none) = 4/24, other ops 5/24
    freq = np.bincount(cells[:, 1], minlength=5) / len(cells)
    assert abs(freq[0] - 4 / 24) < 0.03 and np.all(np.abs(freq[1:] - 5 / 24) < 0.03)
    assert sampler.paths(7) == CellPathSampler(15, seed=1).paths(7)
    restricted = CellPathSampler(3, seed=0, ops=[[3], [0, 1], [0], [0, 4], [0], [0]])
    for s in range(20):
        for cell in restricted.paths(s)[0]:
            assert cell[0] == 3 and cell[1] == 1 and cell[3] == 4


def test_supernet_runs_each_cell_own_op():
    torch.manual_seed(0)
    model = NB201SuperNet(channels=8, cells_per_stage=1)
    x = torch.randn(4, 3, 16, 16)
    path = [(3, 3, 0, 2, 0, 1), (1, 0, 4, 0, 0, 3), (2, 1, 1, 1, 1, 1)]
    model(x, path).sum().backward()
    used = {n for n, p in model.named_parameters() if p.grad is not None and "layers" in n}
    # cell 0 = layers.0, cell 1 = layers.2, cell 2 = layers.4; conv weights of chosen convs only
    assert "layers.0.edges.1.3.op.1.weight" in used and "layers.0.edges.3.2.op.1.weight" in used
    assert "layers.0.edges.0.3.op.1.weight" not in used  # node 1 of cell 0 feeds only `none` edges
    assert "layers.2.edges.5.3.op.1.weight" in used and "layers.4.edges.0.2.op.1.weight" in used
    assert "layers.2.edges.0.3.op.1.weight" not in used and "layers.4.edges.5.3.op.1.weight" not in used
    assert model(x, (3, 3, 3, 3, 3, 3)).shape == (4, 10)


def test_kendall_and_spearman_match_scipy():
    rng = np.random.default_rng(0)
    for n, levels in ((500, None), (800, 7)):
        x = rng.random(n) if levels is None else rng.integers(levels, size=n).astype(float)
        y = x + rng.normal(0, 0.5, n)
        y[:50] = np.round(y[:50], 1)
        assert abs(kendall_tau(x, y) - scipy.stats.kendalltau(x, y).statistic) < 1e-12
        assert abs(spearman_rho(x, y) - scipy.stats.spearmanr(x, y).statistic) < 1e-12
    assert kendall_tau(np.arange(5), np.arange(5)) == pytest.approx(1.0)


def test_rebn_is_the_exact_batch_average_and_restored():
    torch.manual_seed(0)
    model = NB201SuperNet(channels=8, cells_per_stage=1)
    batches = [(torch.randn(6, 3, 16, 16) + 1, torch.zeros(6, dtype=torch.long)) for _ in range(3)]
    before = model.stem[1].running_mean.clone()
    with recalibrated_bn(model, (3,) * 6, batches):
        conv_out = torch.cat([model.stem[0](x) for x, _ in batches])
        assert torch.allclose(model.stem[1].running_mean, conv_out.mean((0, 2, 3)), atol=1e-5)
    assert torch.equal(model.stem[1].running_mean, before)
    acc = supernet_accuracy(model, (3,) * 6, batches, rebn=batches)
    assert 0.0 <= acc <= 100.0


def test_angle_weight_protocol():
    model = NB201SuperNet(channels=4, cells_per_stage=1)
    assert model.num_instances == 3
    params = {id(p) for p in model.parameters()}
    conv = model.choice_weights(2, 3, instance=1)
    assert len(conv) == 1 and conv[0] is model.layers[2].edges[2][3].op[1].weight and conv[0].shape == (8, 8, 3, 3)
    (pool,) = model.choice_weights(5, POOL, instance=2)
    assert id(pool) not in params and pool.shape == (16, 3, 3) and torch.all(pool == 1 / 9)
    assert model.choice_weights(0, SKIP) == [] and model.choice_weights(0, NONE) == []


def one_step(semantics):
    """The model before and after one SGD step of ``semantics`` on cell (3, 3, 3, 1, 3, 2) in every search cell."""
    from anglenas.nb201.optim import update_every_parameter
    from anglenas.train.optim import sgd

    torch.manual_seed(0)
    model = NB201SuperNet(channels=4, cells_per_stage=1)
    lr, m, wd = 0.1, 0.9, 5e-4
    opt = update_every_parameter(model, lr, m, wd) if semantics == "original" else sgd(model, lr, m, wd)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x, (3, 3, 3, 1, 3, 2)), y).backward()
    opt.step()
    return model, before, (lr, m, wd)


def test_original_semantics_steps_every_parameter():
    """An op off the path (1x1 on edge 0) and the BN gamma under the original's Nesterov SGD with a zero gradient:
    buf = wd * p, d = wd * p + m * buf, p' = p - lr * wd * (1 + m) * p; ours leaves it untouched."""
    model, before, (lr, m, wd) = one_step("original")
    name = "layers.0.edges.0.2.op.1.weight"
    now = dict(model.named_parameters())
    assert torch.allclose(now[name], before[name] * (1 - lr * wd * (1 + m)), rtol=1e-6, atol=0)
    assert not torch.equal(now[name], before[name])
    bn = "stem.1.weight"  # decayed and stepped with its gradient: differs from plain SGD without decay
    model_ours, before_ours, _ = one_step("sampled_only")
    ours = dict(model_ours.named_parameters())
    assert torch.equal(ours[name], before_ours[name])
    assert torch.equal(before[bn], before_ours[bn]) and not torch.allclose(now[bn], ours[bn], rtol=0, atol=0)


def test_checkpoints_with_the_old_module_names_still_load():
    """Before NB201 shared DARTS' ReLUConvBN its conv sat at ``X.1`` (now ``X.op.1``): old files still load."""
    import re

    from anglenas.spaces.nb201.network import NB201Network
    from anglenas.spaces.nb201.supernet import NB201SuperNet, upgrade_keys

    for make in (lambda: NB201Network((3, 2, 1, 4, 0, 3), channels=4, cells_per_stage=1),
                 lambda: NB201SuperNet(10, 4, 1)):
        torch.manual_seed(0)
        state = make().state_dict()
        old = {re.sub(r"\.op\.(\d)\.", r".\1.", k): v for k, v in state.items()}
        assert sum(".op." in k for k in state) > 5 and not any(".op." in k for k in old)
        fresh = make()
        fresh.load_state_dict(old)
        assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
        assert upgrade_keys(old).keys() == state.keys() and upgrade_keys(state).keys() == state.keys()
