"""ProxylessNAS: expected FLOPs against the spec's table, the binary-gate gradient against finite differences,
a tiny end-to-end search, resume, bad input."""
import functools
import json
import math

import pytest
import torch

import anglenas.data
from anglenas.archs import parse_arch
from anglenas.search_result import read_search_result
from anglenas.config import parse_config
from anglenas.errors import UserError
from anglenas.operations import Operations
from anglenas.searchers.proxyless import DEMO, ProxylessConfig, ProxylessSearch
from anglenas.searchers.proxyless.gates import MixedLayer
from anglenas.searchers.proxyless.latency import flops_costs, hardware_loss, load_latency_table
from anglenas.searchers.registry import get_searcher
from anglenas.spaces import get_space
from anglenas.spaces.mobilenet import LayerSpec
from anglenas.spaces.mobilenet.relaxed import ProxylessSuperNet

GPU = get_space("gpu")


def small_ops() -> list[list[int]]:
    """Mostly fixed (identity where allowed, else op 0), three searchable layers, one of them with identity."""
    ops = [[-1] if -1 in site else [0] for site in GPU.initial_operations()]
    ops[1], ops[12], ops[20] = [0, 2, -1], [0, 1], [4, 5]
    return ops


# -- expected FLOPs ------------------------------------------------------------------------------------------------
def test_expected_flops_matches_a_hand_sum_of_the_spec_table():
    ops = [[0] for _ in range(21)]
    ops[0], ops[1], ops[20] = [0, 1], [2, -1], [4, 5]
    probs = {0: [0.25, 0.75], 1: [0.5, 0.5], 20: [0.1, 0.9]}
    # spec §2.6 reference MFLOPs: pre 30.1056, post 40.033304; op 0 of every other layer
    hand = (30.1056 + 40.033304 + 0.25 * 30.93 + 0.75 * 61.87 + 0.5 * 26.79 + 2 * 21.98 + 14.53 + 3 * 15.94
            + 11.36 + 3 * 15.34 + 16.40 + 3 * 19.95 + 14.62 + 3 * 19.61 + 0.1 * 27.74 + 0.9 * 55.47)
    model = ProxylessSuperNet(GPU.scaled(0.25, 32, 10, 2), ops)
    with torch.no_grad():
        for i, p in probs.items():
            model.layers[i].alpha.copy_(torch.log(torch.tensor(p)))
    expected = flops_costs("gpu", ops).expected(model.cost_probs())
    assert expected.item() / 1e6 == pytest.approx(hand, abs=0.05)


def test_mul_log_and_add_linear_losses():
    ce, e = torch.tensor(2.0), torch.tensor(600e6, dtype=torch.float64)
    mul = hardware_loss(ce, e, "mul#log", 475e6, alpha=0.2, beta=0.3)
    assert float(mul) == pytest.approx(0.2 * 2.0 * (20.2124 / 19.9788) ** 0.3, rel=1e-4)  # ln 600e6, ln 475e6
    assert float(hardware_loss(ce, e, "add#linear", 475e6, lam=0.1)) == pytest.approx(2.0 + 0.1 * 125 / 475)


# -- the binary-gate gradient --------------------------------------------------------------------------------------
def tiny_layer(ops):
    torch.manual_seed(0)
    layer = MixedLayer(LayerSpec(4, 4, 1, 5, True), ops).double().eval()
    with torch.no_grad():
        layer.alpha.copy_(torch.tensor([0.3, -0.2, 0.5, 0.1][:len(ops)], dtype=torch.float64))
    return layer


def outputs(layer, x):
    with torch.no_grad():
        return [layer.run(k, x) for k in range(len(layer.ops))]


def finite_diff(f, alpha, h=1e-6):
    grad = torch.zeros_like(alpha)
    for i in range(len(alpha)):
        e = torch.zeros_like(alpha)
        e[i] = h
        grad[i] = (f(alpha + e) - f(alpha - e)) / (2 * h)
    return grad


def gate_step(layer, x, loss_fn, active, mode="full_v2", involved=None):
    layer.mode, layer.active = mode, active
    layer.involved = involved or list(range(len(layer.ops)))
    layer.alpha.grad = None
    xin = x.clone().requires_grad_()
    y = layer(xin)
    loss_fn(y).backward()
    gate_grad = layer._gates.grad.clone()
    layer.set_alpha_grad()
    return gate_grad, layer.alpha.grad, xin.grad


def test_full_v2_gradient_is_the_exact_expected_loss_gradient_for_a_linear_loss():
    """For L linear in the layer output, sum_j dL/dg_j p_j (delta_ij - p_i) = d/dalpha_i sum_k p_k L(o_k)."""
    layer = tiny_layer([0, 3, 2, -1])
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    c = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    per_op = torch.stack([(c * o).sum() for o in outputs(layer, x)])
    exact = finite_diff(lambda a: (torch.softmax(a, 0) * per_op).sum(), layer.alpha.detach().clone())
    for active in (0, 1, 2):
        gate_grad, alpha_grad, _ = gate_step(layer, x, lambda y: (c * y).sum(), active)
        assert torch.allclose(gate_grad, per_op, rtol=1e-10)
        assert torch.allclose(alpha_grad, exact, rtol=1e-6, atol=1e-9)


def test_full_v2_gradient_is_the_straight_through_gradient_for_a_nonlinear_loss():
    layer = tiny_layer([0, 3, 2, -1])
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    outs = outputs(layer, x)
    loss = lambda y: (torch.tanh(y) ** 2).sum() + y.mean()  # noqa: E731
    alpha0 = layer.alpha.detach().clone()
    active = 1
    onehot = torch.nn.functional.one_hot(torch.tensor(active), 4).double()

    def mixed(g):
        return loss(sum(g[k] * outs[k] for k in range(4)))

    gate_grad, alpha_grad, x_grad = gate_step(layer, x, loss, active)
    assert torch.allclose(gate_grad, finite_diff(mixed, onehot), rtol=1e-6)
    straight_through = finite_diff(lambda a: mixed(onehot + torch.softmax(a, 0) - torch.softmax(alpha0, 0)), alpha0)
    assert torch.allclose(alpha_grad, straight_through, rtol=1e-6, atol=1e-9)
    xd = x.clone().requires_grad_()
    loss(layer.run(active, xd)).backward()  # the input gradient is that of the active path
    assert torch.allclose(x_grad, xd.grad)


def test_identity_path_leaves_the_layer_out_of_the_arch_step():
    layer = tiny_layer([0, 3, -1])
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    _, alpha_grad, _ = gate_step(layer, x, lambda y: y.sum(), active=2)
    assert alpha_grad is None


def test_two_path_gradient_and_rescale():
    """``two``: the gradient of sum_{k in pair} q_k L(o_k) over the pair (q = softmax over it), zero elsewhere;
    after a step the pair keeps its probability mass and the other alphas are unchanged."""
    layer = tiny_layer([0, 3, 2, -1])
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    c = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    per_op = torch.stack([(c * o).sum() for o in outputs(layer, x)])
    pair = [2, 0]
    alpha0 = layer.alpha.detach().clone()
    _, alpha_grad, _ = gate_step(layer, x, lambda y: (c * y).sum(), active=2, mode="two", involved=pair)
    exact = finite_diff(lambda a: (torch.softmax(a, 0) * per_op[pair]).sum(), alpha0[pair])
    assert torch.allclose(alpha_grad[pair], exact, rtol=1e-6)
    assert alpha_grad[1] == 0 and alpha_grad[3] == 0
    mass = torch.softmax(alpha0, 0)[pair].sum()
    torch.optim.Adam([layer.alpha], lr=0.3, betas=(0.0, 0.999)).step()
    layer.rescale_pair()
    assert torch.softmax(layer.alpha.detach(), 0)[pair].sum() == pytest.approx(float(mass), rel=1e-12)
    assert torch.equal(layer.alpha.detach()[[1, 3]], alpha0[[1, 3]])
    assert not torch.allclose(layer.alpha.detach(), alpha0)


# -- end to end ----------------------------------------------------------------------------------------------------
def tiny_config(tmp_path, name: str, **kw) -> ProxylessConfig:
    ops_path = tmp_path / "ops.json"
    if not ops_path.exists():
        Operations(GPU, small_ops()).save(ops_path)
    settings = dict(dataset="embedded", operations_path=str(ops_path), path=str(tmp_path / name), width_mult=0.1,
                    stem_stride=2, search_val_size=1700, train_batch_size=100, grad_data_batch=100, warmup_epochs=1,
                    n_epochs=2, grad_update_arch_param_every=1, arch_lr=0.2, val_images=100, device="cpu", workers=0,
                    channels_last=False)
    settings.update(kw)
    return ProxylessConfig(**settings)


@pytest.fixture(scope="module", autouse=True)
def fast_runs():
    """One CPU thread (on the shared machine two contended threads are ~10x slower) and the embedded images
    decoded once for the module's runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(anglenas.data, "load_embedded", functools.lru_cache(anglenas.data.load_embedded))
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxyless")
    return tmp, ProxylessSearch(tiny_config(tmp, "full")).run()


def test_search_writes_a_result_that_training_reads(finished):
    tmp, doc = finished
    result = read_search_result(tmp / "full" / "search_result.json")
    space, arch = result.space, result.best
    assert space == "gpu" and arch == doc["top"][0]["arch"]
    assert parse_arch(str(tmp / "full" / "search_result.json")) == ("gpu", arch)
    ops = small_ops()
    assert all(op in site for op, site in zip(arch, ops))
    probs = doc["epochs"][-1]["probs"]
    assert arch == [site[max(range(len(p)), key=p.__getitem__)] for site, p in zip(ops, probs)]
    assert [r["phase"] for r in doc["epochs"]] == ["warmup", "search", "search"]
    assert doc["epochs"][0]["probs"] == doc["epochs"][1]["probs"]  # no arch step in the first search epoch
    assert doc["epochs"][2]["probs"] != doc["epochs"][1]["probs"]
    assert (tmp / "full" / "arch_probabilities.png").stat().st_size > 10_000
    assert list((tmp / "full" / "tb").iterdir())


def test_resume_after_a_stop_matches_an_uninterrupted_run(finished):
    tmp, doc = finished
    assert ProxylessSearch(tiny_config(tmp, "resumed")).run(until_step=4) is None  # mid-epoch 2 of 3
    resumed = ProxylessSearch(tiny_config(tmp, "resumed")).run()
    assert resumed["epochs"] == doc["epochs"] and resumed["top"] == doc["top"]


def test_registered_and_the_paper_command_parses(tmp_path):
    assert get_searcher("proxylessnas").config is ProxylessConfig
    cfg = parse_config(ProxylessConfig, ["--path", "/abs", "--target_hardware", "flops", "--operations_path", "f",
                                         "--train_dir", "tr", "--test_dir", "te"], presets={"demo": DEMO})
    assert (cfg.path, cfg.target_hardware, cfg.train_dir, cfg.test_dir, cfg.dataset) == ("/abs", "flops", "tr",
                                                                                          "te", "imagenet")
    assert (cfg.warmup_epochs, cfg.n_epochs, cfg.init_lr, cfg.grad_binary_mode) == (40, 120, 0.025, "full_v2")


# -- bad input -----------------------------------------------------------------------------------------------------
def test_operations_of_another_space_is_one_clear_error(tmp_path):
    path = tmp_path / "fair.json"
    Operations.full(get_space("fairnas")).save(path)
    with pytest.raises(UserError, match="fairnas space; ProxylessNAS searches the gpu space"):
        ProxylessSearch(tiny_config(tmp_path, "x", operations_path=str(path)))


def latency_doc(ops):
    return {"format": "anglenas-latency-table", "version": 1, "space": "gpu", "unit": "us", "reference": 9000,
            "fixed": 1000.0, "layers": [{str(op): 100.0 + 10 * op for op in site if op != -1} for site in ops]}


def test_latency_table_expected_cost_and_coverage(tmp_path):
    ops = small_ops()
    doc = latency_doc(ops)
    path = tmp_path / "lat.json"
    path.write_text(json.dumps(doc))
    table = load_latency_table(path, "gpu", ops)
    probs = [torch.full((len(s),), 1 / len(s)) for s in ops]
    hand = 1000 + sum(sum(100 + 10 * op for op in s if op != -1) / len(s) for s in ops)
    assert float(table.expected(probs)) == pytest.approx(hand)
    assert table.reference == 9000
    del doc["layers"][12]["1"]
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="does not cover the space: layer 12 has no latency for op\\(s\\) \\[1\\]"):
        ProxylessSearch(tiny_config(tmp_path, "y", target_hardware=str(path)))
    doc["layers"] = doc["layers"][:20]
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="has 20 layers; the gpu space has 21"):
        load_latency_table(path, "gpu", ops)
    assert math.isfinite(table.bounds()[0])


class FixedStream:
    steps_per_epoch = 10

    def __init__(self, x, y):
        self.x, self.y = x, y

    def batches(self, start, n):
        for _ in range(n):
            yield self.x, self.y


def test_two_mode_arch_steps_with_a_latency_table(tmp_path):
    """Each step: the expected latency over the sampled pairs (q = softmax over the pair) as a hand sum, the
    pair keeps its probability mass and every other op's probability is unchanged."""
    ops = small_ops()
    path = tmp_path / "lat.json"
    path.write_text(json.dumps(latency_doc(ops)))
    search = ProxylessSearch(tiny_config(tmp_path, "two", target_hardware=str(path), grad_binary_mode="two",
                                         arch_lr=0.5))
    torch.manual_seed(0)
    stream = FixedStream(torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,)))
    search.build(GPU.scaled(0.1, 16, 10, 2), stream, stream)
    layers = [layer for layer in search.model.layers if layer.searchable]
    moved = False
    for index in range(4):
        before = [layer.alpha.detach().clone() for layer in layers]
        _, expected = search.arch_step(index)
        hand = 1000.0 + sum(100.0 + 10 * site[0] for site in ops if len(site) == 1 and site[0] != -1)
        for layer, alpha in zip(layers, before):
            pair = layer.involved
            q = torch.softmax(alpha[pair], 0)
            hand += sum(float(q[j]) * (0.0 if layer.ops[k] == -1 else 100.0 + 10 * layer.ops[k])
                        for j, k in enumerate(pair))
            p0, p1 = torch.softmax(alpha, 0), torch.softmax(layer.alpha.detach(), 0)
            others = [k for k in range(len(layer.ops)) if k not in pair]
            assert float(p1[pair].sum()) == pytest.approx(float(p0[pair].sum()), rel=1e-5)
            assert torch.allclose(p1[others], p0[others], rtol=1e-5)
            moved |= not torch.allclose(p1, p0)
        assert expected == pytest.approx(hand, rel=1e-6)
    assert moved
