"""ProxylessNAS: expected FLOPs against the original's table and torch's counter, the binary-gate gradient against
finite differences (one layer, and a site shared by several cells), tiny end-to-end searches on the gpu, nb201
and shufflenetv2 spaces, resume, bad input."""
import functools
import json
import math

import numpy as np
import pytest
import torch

import anglenas.data
from anglenas.archs import parse_arch
from anglenas.errors import UserError
from anglenas.operations import Operations
from anglenas.search_result import read_search_result
from anglenas.searchers.proxyless import ProxylessConfig, ProxylessSearch
from anglenas.searchers.proxyless.gates import BinaryGates, SiteGate, searchable_sites
from anglenas.searchers.proxyless.latency import flops_costs, hardware_loss, load_latency_table
from anglenas.searchers.registry import get_searcher
from anglenas.spaces import get_space
from anglenas.spaces.mobilenet import MobileSpace
from anglenas.spaces.relaxed import FixedMixing
from anglenas.stages.search import parse_search, run_search

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
    # reference MFLOPs of the original's GPU table: pre 30.1056, post 40.033304 with thop's (2 * 1728 - 1) * 1000
    # classifier, of which ProxylessNAS counts 1728 * 1000 (upstream LinearLayer.get_flops); op 0 of every other layer
    post = 40.033304 - (1728 - 1) * 1000 / 1e6
    hand = (30.1056 + post + 0.25 * 30.93 + 0.75 * 61.87 + 0.5 * 26.79 + 2 * 21.98 + 14.53 + 3 * 15.94
            + 11.36 + 3 * 15.34 + 16.40 + 3 * 19.95 + 14.62 + 3 * 19.61 + 0.1 * 27.74 + 0.9 * 55.47)
    table = flops_costs(GPU, ops)
    expected = table.expected([[torch.tensor(probs.get(i, [1.0]), dtype=torch.float64) for i in range(21)]])
    assert expected.item() / 1e6 == pytest.approx(hand, abs=0.05)
    assert table.reference == 475e6  # the ABS original's reference at the paper's size


@pytest.mark.parametrize("width", [1.0, 0.5])
def test_expected_flops_of_a_one_hot_distribution_is_the_counted_network(width):
    """At any width the term counts the searched network itself (torch's FLOP counter on the meta device, with
    the classifier as in * out); the reference scales like the space's mean FLOPs."""
    space = GPU.scaled(width, 224, 1000, 2)
    arch = [2, 2, -1, 0, 0, -1, -1, 0, 5, -1, 4, 4, 0, 0, 4, 2, 3, 4, 4, 4, 3]
    table = flops_costs(space, space.initial_operations())
    one_hot = [[torch.tensor([float(op == a) for op in site], dtype=torch.float64)
                for site, a in zip(space.initial_operations(), arch)]]
    classifier = space.head_channels * 1000
    assert table.expected(one_hot).item() == space.counted_flops(arch) - (2 * space.head_channels - 1) * 1000 \
        + classifier
    uniform = [[torch.full((len(site),), 1 / len(site), dtype=torch.float64) for site in space.initial_operations()]]
    paper = flops_costs(GPU, GPU.initial_operations())
    paper_uniform = [[torch.full((len(s),), 1 / len(s), dtype=torch.float64) for s in GPU.initial_operations()]]
    ratio = table.expected(uniform).item() / paper.expected(paper_uniform).item()
    assert table.reference == pytest.approx(475e6 * ratio, rel=1e-12)
    assert (ratio == pytest.approx(1.0)) == (width == 1.0)


def test_mul_log_and_add_linear_losses():
    ce, e = torch.tensor(2.0), torch.tensor(600e6, dtype=torch.float64)
    mul = hardware_loss(ce, e, "mul#log", 475e6, alpha=0.2, beta=0.3)
    assert float(mul) == pytest.approx(0.2 * 2.0 * (20.2124 / 19.9788) ** 0.3, rel=1e-4)  # ln 600e6, ln 475e6
    assert float(hardware_loss(ce, e, "add#linear", 475e6, lam=0.1)) == pytest.approx(2.0 + 0.1 * 125 / 475)


# -- the binary-gate gradient --------------------------------------------------------------------------------------
TINY = MobileSpace(name="gpu", stem_channels=4, first_block_channels=4, stages=((4, 2, 1),), head_channels=8,
                   identity_in_repeats=True, shrink=GPU.shrink, input_size=5, num_classes=3, stem_stride=1)
"""Two 4 -> 4 layers at 5x5; the second may be identity."""


def tiny_layer(ops):
    """A relaxed supernet whose layer 1 holds ``ops``; returns (model, that mixed op, its alpha)."""
    torch.manual_seed(0)
    model = TINY.relaxed_supernet([[0], ops]).double().eval()
    alpha = model.alpha(0, 1)
    with torch.no_grad():
        alpha.copy_(torch.tensor([0.3, -0.2, 0.5, 0.1][:len(ops)], dtype=torch.float64))
    return model, model.layers[1], alpha


def outputs(op, x):
    with torch.no_grad():
        return [op.run(k, x) for k in range(len(op.ops))]


def finite_diff(f, alpha, h=1e-6):
    grad = torch.zeros_like(alpha)
    for i in range(len(alpha)):
        e = torch.zeros_like(alpha)
        e[i] = h
        grad[i] = (f(alpha + e) - f(alpha - e)) / (2 * h)
    return grad


def gate_step(model, op, x, loss_fn, active, mode="full_v2", involved=None):
    gates = BinaryGates(model, mode)
    gates.sites = {(0, 1): SiteGate(active, involved or list(range(len(op.ops))))}
    model.set_mixing(gates)
    model.alpha(0, 1).grad = None
    xin = x.clone().requires_grad_()
    loss_fn(op(xin)).backward()
    gate_grad = gates.sites[(0, 1)].gates.grad.clone()
    gates.set_arch_grads()
    return gates, gate_grad, model.alpha(0, 1).grad, xin.grad


def test_full_v2_gradient_is_the_exact_expected_loss_gradient_for_a_linear_loss():
    """For L linear in the layer output, sum_j dL/dg_j p_j (delta_ij - p_i) = d/dalpha_i sum_k p_k L(o_k)."""
    model, op, alpha = tiny_layer([0, 3, 2, -1])
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    c = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    per_op = torch.stack([(c * o).sum() for o in outputs(op, x)])
    exact = finite_diff(lambda a: (torch.softmax(a, 0) * per_op).sum(), alpha.detach().clone())
    for active in (0, 1, 2):
        _, gate_grad, alpha_grad, _ = gate_step(model, op, x, lambda y: (c * y).sum(), active)
        assert torch.allclose(gate_grad, per_op, rtol=1e-10)
        assert torch.allclose(alpha_grad, exact, rtol=1e-6, atol=1e-9)


def test_full_v2_gradient_is_the_straight_through_gradient_for_a_nonlinear_loss():
    model, op, alpha = tiny_layer([0, 3, 2, -1])
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    outs = outputs(op, x)
    loss = lambda y: (torch.tanh(y) ** 2).sum() + y.mean()  # noqa: E731
    alpha0 = alpha.detach().clone()
    active = 1
    onehot = torch.nn.functional.one_hot(torch.tensor(active), 4).double()

    def mixed(g):
        return loss(sum(g[k] * outs[k] for k in range(4)))

    _, gate_grad, alpha_grad, x_grad = gate_step(model, op, x, loss, active)
    assert torch.allclose(gate_grad, finite_diff(mixed, onehot), rtol=1e-6)
    straight_through = finite_diff(lambda a: mixed(onehot + torch.softmax(a, 0) - torch.softmax(alpha0, 0)), alpha0)
    assert torch.allclose(alpha_grad, straight_through, rtol=1e-6, atol=1e-9)
    xd = x.clone().requires_grad_()
    loss(op.run(active, xd)).backward()  # the input gradient is that of the active path
    assert torch.allclose(x_grad, xd.grad)


def test_identity_path_leaves_the_layer_out_of_the_arch_step():
    model, op, _ = tiny_layer([0, 3, -1])
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    _, _, alpha_grad, _ = gate_step(model, op, x, lambda y: y.sum(), active=2)
    assert alpha_grad is None


def test_two_path_gradient_and_rescale():
    """``two``: the gradient of sum_{k in pair} q_k L(o_k) over the pair (q = softmax over it), zero elsewhere;
    after a step the pair keeps its probability mass and the other alphas are unchanged."""
    model, op, alpha = tiny_layer([0, 3, 2, -1])
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    c = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    per_op = torch.stack([(c * o).sum() for o in outputs(op, x)])
    pair = [2, 0]
    alpha0 = alpha.detach().clone()
    gates, _, alpha_grad, _ = gate_step(model, op, x, lambda y: (c * y).sum(), active=2, mode="two", involved=pair)
    exact = finite_diff(lambda a: (torch.softmax(a, 0) * per_op[pair]).sum(), alpha0[pair])
    assert torch.allclose(alpha_grad[pair], exact, rtol=1e-6)
    assert alpha_grad[1] == 0 and alpha_grad[3] == 0
    mass = torch.softmax(alpha0, 0)[pair].sum()
    torch.optim.Adam([alpha], lr=0.3, betas=(0.0, 0.999)).step()
    gates.rescale_pairs()
    assert torch.softmax(alpha.detach(), 0)[pair].sum() == pytest.approx(float(mass), rel=1e-12)
    assert torch.equal(alpha.detach()[[1, 3]], alpha0[[1, 3]])
    assert not torch.allclose(alpha.detach(), alpha0)


def test_a_site_shared_by_every_cell_has_one_gate():
    """NB201: an edge's gate is shared by the 3 cells; its gradient is that of L(g) with every place of the edge
    computing sum_k g_k o_k (FixedMixing, finite differences), the rows of the shared alpha get
    p_i (dL/dg_i - <p, dL/dg>), and a site whose active op is none gets a zero row."""
    torch.manual_seed(0)
    nb = get_space("nb201")
    model = nb.relaxed_supernet(nb.initial_operations(), channels=2, depth=1).double().eval()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    y = torch.tensor([1, 7])
    gates = BinaryGates(model, "full_v2")
    gates.sample(torch.Generator().manual_seed(0))
    active = [gates.sites[(0, e)].active for e in range(6)]
    gates.sites[(0, 2)].active = 0  # none on edge 2 <- 1: left out
    active[2] = 0
    gates.sites[(0, 1)].active = active[1] = 3
    model.set_mixing(gates)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    gate_grad = gates.sites[(0, 1)].gates.grad.clone()

    def loss(g):
        weights = [[[float(k == a) for k in range(5)] for a in active]]
        weights[0][1] = g.tolist()
        model.set_mixing(FixedMixing(weights))
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(model(x), y)

    onehot = torch.nn.functional.one_hot(torch.tensor(3), 5).double()
    assert torch.allclose(gate_grad, finite_diff(loss, onehot), rtol=1e-5, atol=1e-9)
    gates.set_arch_grads()
    grad = model.alphas.grad
    p = torch.softmax(model.alphas.detach()[1], 0)
    assert torch.allclose(grad[1], p * (gate_grad - (p * gate_grad).sum()), rtol=1e-10)
    assert torch.equal(grad[2], torch.zeros(5, dtype=torch.float64))


# -- end to end ----------------------------------------------------------------------------------------------------
def tiny_config(tmp_path, name: str, ops_path=None, **kw) -> ProxylessConfig:
    if ops_path is None:
        ops_path = tmp_path / "ops.json"
        if not ops_path.exists():
            Operations(GPU, small_ops()).save(ops_path)
    settings = dict(dataset="embedded", operations_path=str(ops_path), save=str(tmp_path / name), width_mult=0.1,
                    stem_stride=2, search_val_size=1700, train_batch_size=100, grad_data_batch=100, warmup_epochs=1,
                    n_epochs=2, grad_update_arch_param_every=1, arch_lr=0.2, val_images=100, device="cpu", workers=0,
                    channels_last=False, threads=1)
    settings.update(kw)
    return ProxylessConfig(**settings)


def search(cfg: ProxylessConfig, until_step=None):
    from anglenas.operations import load_operations

    return ProxylessSearch(cfg, load_operations(cfg.operations_path, cfg.space)).run(until_step)


@pytest.fixture(scope="module", autouse=True)
def fast_runs(one_thread):
    """One CPU thread and the embedded images decoded once for the module's runs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(anglenas.data, "load_embedded", functools.lru_cache(anglenas.data.load_embedded))
        yield


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxyless")
    cfg = tiny_config(tmp, "full")
    run_search(get_searcher("proxylessnas"), cfg)
    return tmp, json.loads((tmp / "full" / "search_result.json").read_text())


def test_search_writes_a_result_that_training_reads(finished):
    tmp, doc = finished
    result = read_search_result(tmp / "full" / "search_result.json")
    arch = result.best
    assert result.space == "gpu" and arch == doc["top"][0]["arch"] and result.searcher == "proxylessnas"
    assert parse_arch(str(tmp / "full" / "search_result.json")) == ("gpu", arch)
    ops = small_ops()
    assert all(op in site for op, site in zip(arch, ops))
    probs = doc["epochs"][-1]["probs"][0]
    assert arch == [site[max(range(len(p)), key=p.__getitem__)] for site, p in zip(ops, probs)]
    chosen = [max(p) for p in probs]
    assert doc["top"][0]["score"] == pytest.approx(sum(math.log(p) for p in chosen))
    assert [r["phase"] for r in doc["epochs"]] == ["warmup", "search", "search"]
    assert doc["epochs"][0]["probs"] == doc["epochs"][1]["probs"]  # no arch step in the first search epoch
    assert doc["epochs"][2]["probs"] != doc["epochs"][1]["probs"]
    assert (tmp / "full" / "arch_probabilities.png").stat().st_size > 10_000
    assert list((tmp / "full" / "tb").iterdir())


def test_resume_after_a_stop_matches_an_uninterrupted_run(finished):
    tmp, doc = finished
    assert search(tiny_config(tmp, "resumed"), until_step=4) is None  # mid-epoch 2 of 3
    resumed = search(tiny_config(tmp, "resumed"))
    assert resumed.details["epochs"] == doc["epochs"] and resumed.archs == [doc["top"][0]["arch"]]


@pytest.mark.parametrize("space_name, ops", [
    ("nb201", [[0, 3], [1, 2, 3], [1], [4, 3], [0, 1, 2, 3, 4], [2, 3]]),
    ("shufflenetv2", [[0, 3] if i % 3 == 0 else [2] if i % 3 == 1 else [1, 0, 2] for i in range(20)]),
])
def test_search_through_the_stage_obeys_a_shrunk_space(tmp_path, space_name, ops):
    space = get_space(space_name)
    Operations(space, ops).save(tmp_path / "ops.json")
    size = {"nb201": ["--width_mult", "0.25", "--stem_stride", "1"], "shufflenetv2": ["--width_mult", "0.2"]}
    argv = ["--dataset", "embedded", "--operations_path", str(tmp_path / "ops.json"), "--path", str(tmp_path / "run"),
            "--search_val_size", "1800", "--train_batch_size", "100", "--grad_data_batch", "100",
            "--warmup_epochs", "0", "--n_epochs", "2", "--grad_update_arch_param_every", "1", "--arch_lr", "0.3",
            "--val_images", "100", "--device", "cpu", "--workers", "0", "--cpu_threads", "1", *size[space_name]]
    searcher, cfg = parse_search(argv, "proxylessnas")
    result = run_search(searcher, cfg)
    doc = json.loads((tmp_path / "run" / "search_result.json").read_text())
    assert doc["space"] == space_name and doc["operations"] == ops
    arch = result.best
    assert all(op in site for op, site in zip(arch, ops))
    probs = doc["epochs"][-1]["probs"][0]
    assert arch == [site[int(np.argmax(p))] for site, p in zip(ops, probs)]
    assert any(p != [1 / len(p)] * len(p) for p in probs if len(p) > 1)  # the architecture weights moved
    assert parse_arch(str(tmp_path / "run" / "search_result.json")) == (space_name, arch)


def test_one_op_per_layer_runs_without_architecture_weights(tmp_path):
    """Item 7: an operations file with one op per layer (identity only where allowed) has no architecture
    weight; the original runs it (a 1-choice MixedEdge never moves), so do we: the only architecture results."""
    ops = [[-1] if -1 in site else [3] for site in GPU.initial_operations()]
    Operations(GPU, ops).save(tmp_path / "one.json")
    cfg = tiny_config(tmp_path, "one", tmp_path / "one.json", warmup_epochs=0, n_epochs=2)
    result = run_search(get_searcher("proxylessnas"), cfg)
    assert result.best == [site[0] for site in ops] and result.scores == [0.0]
    assert result.cost["arch_steps"] == 0


def test_registered_and_the_paper_command_parses():
    searcher, cfg = parse_search(["--path", "/abs", "--target_hardware", "flops", "--operations_path", "f",
                                  "--train_dir", "tr", "--test_dir", "te", "--manual_seed", "3", "--cpu_threads",
                                  "2"], "proxylessnas")
    assert searcher.name == "proxylessnas" and searcher.config is ProxylessConfig and searcher.needs == "relaxed"
    assert (cfg.save, cfg.target_hardware, cfg.train_dir, cfg.test_dir, cfg.dataset) == ("/abs", "flops", "tr",
                                                                                         "te", "imagenet")
    assert (cfg.seed, cfg.threads) == (3, 2)
    assert (cfg.warmup_epochs, cfg.n_epochs, cfg.init_lr, cfg.grad_binary_mode) == (40, 120, 0.025, "full_v2")
    assert cfg.amp is False  # item 2: fp32, the original's precision (bf16 autocast only with --amp)
    _, demo = parse_search(["--demo", "--space", "nb201"], "proxylessnas")
    assert (demo.dataset, demo.width_mult, demo.stem_stride, demo.device) == ("embedded", 0.5, 1, "cpu")
    with pytest.raises(UserError, match="--arch_adam_beta1 must be"):
        parse_search(["--arch_adam_beta1", "1.5"], "proxylessnas")


# -- bad input -----------------------------------------------------------------------------------------------------
def latency_doc(ops):
    return {"format": "anglenas-latency-table", "version": 1, "space": "gpu", "unit": "us", "reference": 9000,
            "fixed": 1000.0, "layers": [{str(op): 100.0 + 10 * op for op in site if op != -1} for site in ops]}


def test_latency_table_expected_cost_and_coverage(tmp_path):
    ops = small_ops()
    doc = latency_doc(ops)
    path = tmp_path / "lat.json"
    path.write_text(json.dumps(doc))
    table = load_latency_table(path, "gpu", ops, free_ops=[-1])
    probs = [[torch.full((len(s),), 1 / len(s)) for s in ops]]
    hand = 1000 + sum(sum(100 + 10 * op for op in s if op != -1) / len(s) for s in ops)
    assert float(table.expected(probs)) == pytest.approx(hand)
    assert table.reference == 9000
    del doc["layers"][12]["1"]
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="does not cover the space: layer 12 has no latency for op\\(s\\) \\[1\\]"):
        search(tiny_config(tmp_path, "y", target_hardware=str(path)))
    doc["layers"] = doc["layers"][:20]
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="has 20 layers; the gpu space has 21"):
        load_latency_table(path, "gpu", ops)
    assert math.isfinite(table.bounds()[0])


def test_bad_settings_are_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="at least one epoch"):
        search(tiny_config(tmp_path, "z", warmup_epochs=0, n_epochs=0))
    with pytest.raises(UserError, match="no such file"):
        search(tiny_config(tmp_path, "z", target_hardware=str(tmp_path / "missing.json")))
    Operations.full(get_space("nb201")).save(tmp_path / "nb.json")
    with pytest.raises(UserError, match="pass --stem_stride 1"):
        search(tiny_config(tmp_path, "z", tmp_path / "nb.json"))


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
    run = ProxylessSearch(tiny_config(tmp_path, "two", target_hardware=str(path), grad_binary_mode="two",
                                      arch_lr=0.5), Operations(GPU, ops))
    torch.manual_seed(0)
    stream = FixedStream(torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,)))
    run.build(GPU.scaled(0.1, 16, 10, 2), stream, stream)
    model = run.model
    sites = searchable_sites(model)
    moved = False
    for index in range(4):
        before = [model.alpha(*site).detach().clone() for site in sites]
        _, expected = run.arch_step(index)
        hand = 1000.0 + sum(100.0 + 10 * site[0] for site in ops if len(site) == 1 and site[0] != -1)
        for site, alpha in zip(sites, before):
            pair, site_ops = run.gates.sites[site].involved, model.site_ops[site[0]][site[1]]
            q = torch.softmax(alpha[pair], 0)
            hand += sum(float(q[j]) * (0.0 if site_ops[k] == -1 else 100.0 + 10 * site_ops[k])
                        for j, k in enumerate(pair))
            p0, p1 = torch.softmax(alpha, 0), torch.softmax(model.alpha(*site).detach(), 0)
            others = [k for k in range(len(site_ops)) if k not in pair]
            assert float(p1[pair].sum()) == pytest.approx(float(p0[pair].sum()), rel=1e-5)
            assert torch.allclose(p1[others], p0[others], rtol=1e-5)
            moved |= not torch.allclose(p1, p0)
        assert expected == pytest.approx(hand, rel=1e-6)
    assert moved
