"""DARTS: genotype derivation, the restricted MixedOp, the second-order gradient, the search end to end with resume,
upstream's learning-rate order, and the CIFAR evaluation networks, recipes and training."""
import json
import math
import pickle

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.func import functional_call

from anglenas.errors import UserError
from anglenas.operations import load_operations
from anglenas.search_result import read_search_result
from anglenas.searchers.darts.architect import Architect
from anglenas.searchers.darts.search import DartsConfig, run_darts
from anglenas.searchers.darts.searchdata import epoch_lr
from anglenas.searchers.registry import get_searcher
from anglenas.spaces.darts.genotypes import (
    DARTS_ABS,
    DARTS_V2,
    PDARTS_ABS,
    Genotype,
    load_genotype,
    parse_genotype,
    save_genotype,
)
from anglenas.spaces.darts.model_eval import NetworkCIFAR, NetworkImageNet
from anglenas.spaces.darts.model_search import SearchNetwork, derive_cell
from anglenas.spaces.darts.ops import PRIMITIVES, DilConv, FactorizedReduce, Identity, SepConv, Zero
from anglenas.stages.search import run_search
from anglenas.stages.train_cifar import CifarTrainConfig, cutout, evaluate_checkpoint, resolve, run_train

pytestmark = pytest.mark.usefixtures("one_thread")


# 2 ops per edge, as ABS leaves them (file order deliberately not sorted on some edges)
ABS_OPS = [[0, 4], [6, 3], [1, 5], [4, 7], [2, 6], [0, 5], [3, 4], [6, 7], [1, 4], [0, 7], [5, 6], [3, 5], [2, 4],
           [4, 6]]


def write_ops(path, ops, space="darts"):
    path.write_text(json.dumps({"format": "anglenas-operations", "version": 1, "space": space, "operations": ops}))
    return path


# -- genotype derivation -------------------------------------------------------------------------------------------

def test_genotype_of_hand_built_alphas():
    w = np.full((14, 8), 0.01)
    w[0] = [0.9, 0, 0, 0.05, 0.02, 0, 0, 0]       # none is largest but excluded: skip_connect (strength 0.05)
    w[1, 6] = 0.5                                  # dil_conv_3x3: node 0 lists edge 1 first (stronger)
    w[2, 4], w[3, 2], w[4, 7] = 0.3, 0.2, 0.6      # node 1 keeps edge 4 (dil5 from 2) then edge 2 (sep3 from 0)
    w[5, 1], w[6, 5], w[7, 0], w[8, 3] = 0.4, 0.7, 0.99, 0.1   # node 2: edge 6 (sep5 from 1), edge 5 (max from 0)
    w[9, 5], w[10, 4], w[11, 2], w[12, 6], w[13, 7] = 0.2, 0.3, 0.25, 0.05, 0.31  # node 3: edges 13 and 10
    expected = [("dil_conv_3x3", 1), ("skip_connect", 0), ("dil_conv_5x5", 2), ("sep_conv_3x3", 0),
                ("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("dil_conv_5x5", 4), ("sep_conv_3x3", 1)]
    full = [list(range(8))] * 14
    assert derive_cell(w, full) == expected
    # through the network: softmax(log w) = w / sum(w); the derivation only compares, so the result is the same
    model = SearchNetwork(2, 10, 3)
    with torch.no_grad():
        model.alphas_normal.copy_(torch.log(torch.tensor(w + 1e-9)))
        model.alphas_reduce.copy_(torch.log(torch.tensor(w[:, ::-1] + 1e-9).contiguous()))
    genotype = model.derive()
    assert genotype.normal == expected and genotype.normal_concat == [2, 3, 4, 5]
    # reversed columns: edge 0's 0.9 now sits on dil_conv_5x5, making edge 0 the stronger input of node 0
    assert genotype.reduce[:2] == [("dil_conv_5x5", 0), ("max_pool_3x3", 1)]


def test_genotype_columns_follow_the_file_order():
    ops = [[5, 0]] * 14                    # column 0 = sep_conv_5x5, column 1 = none
    w = np.tile([0.1, 0.9], (14, 1))
    w[7, 0], w[8, 0] = 0.3, 0.2             # node 2 prefers edges 7 (state 2) and 8 (state 3)
    cell = derive_cell(w, ops)
    assert all(op == "sep_conv_5x5" for op, _ in cell)
    assert [s for _, s in cell][4:6] == [2, 3]


# -- the search network in the file's space ------------------------------------------------------------------------

def test_mixed_op_holds_only_the_file_ops_in_file_order():
    model = SearchNetwork(4, 10, 3, ABS_OPS)
    assert model.alphas_normal.shape == (14, 2) and model.alphas_reduce.shape == (14, 2)
    normal, reduce = model.cells[0], model.cells[1]
    assert reduce.reduction and not normal.reduction
    def kinds(op):
        return op[0] if isinstance(op, nn.Sequential) else op
    for e, ops in enumerate(ABS_OPS):
        for cell in (normal, reduce):
            got = [kinds(op) for op in cell.edges[e].candidates]
            assert len(got) == 2
            for op_index, module in zip(ops, got):
                name = PRIMITIVES[op_index]
                expect = {"none": Zero, "max_pool_3x3": nn.MaxPool2d, "avg_pool_3x3": nn.AvgPool2d,
                          "sep_conv_3x3": SepConv, "sep_conv_5x5": SepConv, "dil_conv_3x3": DilConv,
                          "dil_conv_5x5": DilConv}.get(name)
                if name == "skip_connect":
                    expect = FactorizedReduce if cell.reduction and _source(e) < 2 else Identity
                assert isinstance(module, expect), (e, name, module)
    # the 5x5 separable conv really has 5x5 depthwise kernels at Sequential index 1 and 5
    sep5 = normal.edges[2].candidates[1].op
    assert sep5[1].kernel_size == (5, 5) and sep5[5].kernel_size == (5, 5)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def _source(edge):
    offsets = [0, 2, 5, 9, 14]
    node = max(i for i in range(4) if offsets[i] <= edge)
    return edge - offsets[node]


def test_operations_file_errors_and_pickle(tmp_path):
    assert load_operations(str(write_ops(tmp_path / "ok.json", ABS_OPS)), "darts").ops == ABS_OPS
    with open(tmp_path / "orig.pkl", "wb") as fh:
        pickle.dump([[np.int64(o) for o in edge] for edge in ABS_OPS], fh)
    assert load_operations(str(tmp_path / "orig.pkl"), "darts").ops == ABS_OPS
    # edges with unequal op counts (upstream's [14, k] alphas refuse them): each edge uses the head of its row
    unequal = [list(e) for e in ABS_OPS]
    unequal[3] = [4]
    model = SearchNetwork(2, 10, 3, load_operations(str(write_ops(tmp_path / "unequal.json", unequal)), "darts").ops)
    assert model.alphas_normal.shape == (14, 2) and model.alphas_normal[3, 1] == 0
    assert model.alpha(0, 3).shape == (1,) and model.probabilities()[0][3].tolist() == [1.0]
    assert len(model.cells[0].edges[3].candidates) == 1 and model(torch.randn(1, 3, 8, 8)).shape == (1, 10)
    gpu_ops = [[0, 1, 2, 3, 4, 5]] * 21
    with pytest.raises(UserError, match="gpu"):
        load_operations(str(write_ops(tmp_path / "gpu.json", gpu_ops, space="gpu")), "darts")
    with pytest.raises(UserError, match="edge 1 .* only 'none'"):
        SearchNetwork(2, 10, 3, [[4], [0]] + ABS_OPS[2:])
    with pytest.raises(UserError, match="DARTS_ABS"):
        parse_genotype("NO_SUCH_CELL")


def test_genotype_json_round_trip_and_string(tmp_path):
    save_genotype(DARTS_V2, tmp_path / "g.json")
    assert load_genotype(tmp_path / "g.json") == DARTS_V2
    assert parse_genotype(str(tmp_path / "g.json")) == DARTS_V2
    assert parse_genotype(str(DARTS_V2)) == DARTS_V2
    with pytest.raises(UserError, match="state 5"):
        parse_genotype("Genotype(normal=[('sep_conv_3x3', 5), ('sep_conv_3x3', 1)], normal_concat=[2], "
                       "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=[2])")


# -- second order ---------------------------------------------------------------------------------------------------

def _smooth_tiny_network():
    """Tanh instead of ReLU, so finite differences of the unrolled objective are well defined."""
    torch.manual_seed(0)
    model = SearchNetwork(2, 3, 3, [[4, 6]] * 14).double()
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, name, nn.Tanh())
    with torch.no_grad():
        for a in model.arch_parameters():
            a.normal_(0, 0.5)
    return model


def test_second_order_gradient_matches_finite_difference():
    model = _smooth_tiny_network()
    gen = torch.Generator().manual_seed(1)
    train = (torch.randn(4, 3, 6, 6, generator=gen, dtype=torch.float64), torch.tensor([0, 1, 2, 1]))
    valid = (torch.randn(4, 3, 6, 6, generator=gen, dtype=torch.float64), torch.tensor([2, 0, 1, 1]))
    eta, wd = 0.1, 3e-4
    names = [n for n, _ in model.named_parameters() if not n.startswith("alphas_")]
    weights = dict(zip(names, model.weights()))
    buffers = {n: b.clone() for n, b in model.named_buffers()}

    def loss(params, batch):
        logits = functional_call(model, {**{n: b.clone() for n, b in buffers.items()}, **params}, (batch[0],))
        return nn.functional.cross_entropy(logits, batch[1])

    def unrolled_objective(an, ar):
        """L_val(w - eta (dL_train/dw + wd w), alpha): the function whose alpha-gradient DARTS approximates."""
        g = torch.autograd.grad(loss({**weights, "alphas_normal": an, "alphas_reduce": ar}, train),
                                list(weights.values()))
        stepped = {n: w - eta * (gw + wd * w) for (n, w), gw in zip(weights.items(), g)}
        return loss({**stepped, "alphas_normal": an, "alphas_reduce": ar}, valid).item()

    an, ar = model.alphas_normal.detach().clone(), model.alphas_reduce.detach().clone()
    dn, dr = torch.randn(an.shape, generator=gen, dtype=torch.float64), torch.randn(ar.shape, generator=gen,
                                                                                      dtype=torch.float64)
    h = 1e-4
    plus, minus = unrolled_objective(an + h * dn, ar + h * dr), unrolled_objective(an - h * dn, ar - h * dr)
    finite_diff = (plus - minus) / (2 * h)

    def directional(grads):
        return ((grads[0] * dn).sum() + (grads[1] * dr).sum()).item()

    architect = Architect(model, momentum=0.9, weight_decay=wd, unrolled=True, r=1e-5)
    _, grads = architect.unrolled_gradient(train, valid, eta, None)
    assert directional(grads) == pytest.approx(finite_diff, rel=1e-5)
    architect.r = 1e-2   # the paper's eps = 0.01 / ||grad||: a coarser but still close estimate
    _, grads = architect.unrolled_gradient(train, valid, eta, None)
    assert directional(grads) == pytest.approx(finite_diff, rel=0.05)
    first_order = torch.autograd.grad(loss({**weights, "alphas_normal": model.alphas_normal,
                                            "alphas_reduce": model.alphas_reduce}, valid), model.arch_parameters())
    assert abs(directional(first_order) - finite_diff) > 0.2 * abs(finite_diff)  # the test can tell them apart


# -- end to end -----------------------------------------------------------------------------------------------------

def _cfg(save, ops_path, **kw):
    return DartsConfig(dataset="embedded", operations_path=str(ops_path), save=str(save), init_channels=2, depth=3,
                       batch_size=8, epochs=2, steps_per_epoch=2, eval_limit=16, device="cpu", threads=1, **kw)


def test_tiny_search_writes_genotype_and_resumes(tmp_path, monkeypatch):
    ops_path = write_ops(tmp_path / "ops.json", ABS_OPS)
    straight = run_search(get_searcher("darts"), _cfg(tmp_path / "a", ops_path))
    genotype = load_genotype(tmp_path / "a" / "genotype.json")
    assert genotype == straight.best
    saved = read_search_result(tmp_path / "a")
    assert (saved.searcher, saved.space, saved.archs, saved.operations) == ("darts", "darts", [genotype], ABS_OPS)
    history = straight.details["history"]
    chosen = []
    for kind in ("normal", "reduce"):
        for i, (op, src) in enumerate(getattr(genotype, kind)):  # every chosen op is a non-none op of the file's edge
            edge = [0, 2, 5, 9][i // 2] + src
            assert op != "none" and PRIMITIVES.index(op) in ABS_OPS[edge]
            chosen.append(history[-1]["alphas"][kind][edge][ABS_OPS[edge].index(PRIMITIVES.index(op))])
    assert len(chosen) == 16 and saved.scores[0] == pytest.approx(np.mean(chosen), abs=1e-5)
    assert (tmp_path / "a" / "alphas.png").is_file() and (tmp_path / "a" / "genotype.png").is_file()
    # upstream steps its cosine schedule at the top of each epoch: epoch e runs at the value after e + 1 steps
    assert [r["lr"] for r in history] == pytest.approx([0.001 + 0.024 * (1 + math.cos(math.pi / 2)) / 2, 0.001])
    monkeypatch.setattr("anglenas.searchers.darts.common.plot_alphas", lambda *args: None)   # figures: checked above
    monkeypatch.setattr("anglenas.searchers.darts.common.plot_genotype", lambda *args: Figure(figsize=(1, 1)))
    operations = load_operations(ops_path, "darts")
    assert run_darts(_cfg(tmp_path / "b", ops_path), operations, max_epochs=1) is None       # killed after epoch 1
    resumed = run_darts(_cfg(tmp_path / "b", ops_path), operations)
    assert resumed.best == straight.best
    a, b = (r.details["history"][-1]["alphas"]["normal"] for r in (straight, resumed))
    assert np.allclose(a, b, atol=1e-6)
    with pytest.raises(UserError, match="other settings"):
        run_darts(_cfg(tmp_path / "b", ops_path, seed=3), operations)


def test_epoch_learning_rate_follows_upstreams_order():
    """quark0/darts and chenxin061/pdarts call scheduler.step() before each epoch (PyTorch 0.3 / 0.4)."""
    assert epoch_lr(0, 50, 0.025, 0.001) == pytest.approx(0.001 + 0.012 * (1 + math.cos(math.pi / 50)))
    assert epoch_lr(49, 50, 0.025, 0.001) == pytest.approx(0.001)
    assert epoch_lr(24, 25, 0.025, 0.0) == 0.0                              # PDARTS' last epoch: lr 0
    assert epoch_lr(0, 600, 0.025, 0.0) == pytest.approx(0.0125 * (1 + math.cos(math.pi / 600)))


# -- evaluation network and training ------------------------------------------------------------------------------

def test_cutout_zeroes_a_clipped_square():
    x = torch.ones(64, 1, 32, 32)
    out = cutout(x, 16, torch.Generator().manual_seed(0))
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 256 and zeros.min() >= 64   # a full 16x16 square, or one clipped to >= 8x8 at a corner


def test_evaluation_networks_heads_and_shapes():
    net = NetworkCIFAR(4, 10, 6, True, DARTS_V2)
    net.drop_path_prob = 0.2
    net.train()
    logits, aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == aux.shape == (2, 10)
    net.eval()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # 14 cells at C=8: reductions at cells 4 and 9 (the auxiliary head sits after cell 9, at 7x7 for 224 input)
    imagenet = NetworkImageNet(8, 5, 14, True, DARTS_V2)
    assert [i for i, c in enumerate(imagenet.cells) if c.reduction] == [4, 9]
    assert imagenet.aux_position == 9 and hasattr(imagenet, "drop_path_prob")
    imagenet.train()
    logits, aux = imagenet(torch.randn(2, 3, 224, 224))
    assert logits.shape == aux.shape == (2, 5)


def test_train_demo_writes_summary(tmp_path):
    cfg = CifarTrainConfig(arch="DARTS_ABS", dataset="embedded", save=str(tmp_path / "t"), init_channels=2,
                           layers=3, batch_size=16, epochs=1, steps_per_epoch=2, eval_limit=32, device="cpu")
    summary = run_train(cfg)
    saved = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert saved["top1"] == summary["top1"] and 0.0 <= saved["top1"] <= 100.0 and saved["eval_images"] == 32
    assert parse_genotype(Genotype(**saved["genotype"])) == parse_genotype("DARTS_ABS")
    # eval mode rebuilds the network from the checkpoint alone and scores what training last scored
    again = evaluate_checkpoint(CifarTrainConfig(dataset="embedded", eval=True, eval_limit=32, device="cpu",
                                                 eval_resume=str(tmp_path / "t" / "checkpoint.pt")))
    assert again["top1"] == pytest.approx(saved["top1"])


def test_training_resumes_like_an_uninterrupted_run(tmp_path):
    def cfg(save):
        return CifarTrainConfig(arch="DARTS_V2", dataset="embedded", save=str(tmp_path / save), init_channels=2,
                                layers=3, batch_size=16, epochs=2, steps_per_epoch=1, eval_limit=16, device="cpu")

    straight = run_train(cfg("a"))
    assert run_train(cfg("b"), max_epochs=1) is None
    resumed = run_train(cfg("b"))
    losses = [r["train_loss"] for r in straight["history"]]
    assert [r["train_loss"] for r in resumed["history"]] == pytest.approx(losses)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_imagenet_auxiliary_head_has_anglenas_768_channel_bn():
    """AngleNAS' DARTS ImageNet model puts a BatchNorm2d(768) after the auxiliary head's 2x2 conv, as the CIFAR head."""
    net = NetworkImageNet(48, 1000, 14, True, DARTS_V2)
    aux = dict(net.auxiliary_head.named_parameters())
    # after cell 9 (C=192, 4 * 192 = 768 channels): 1x1 conv 768->128, BN 128, 2x2 conv 128->768, BN 768, 768->1000
    assert sum(p.numel() for p in aux.values()) == 768 * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * 1000 + 1000
    assert sum(p.numel() for p in aux.values()) == 1_262_312 and aux["features.6.weight"].shape == (768,)


def test_each_searchers_genotype_trains_with_its_papers_recipe(tmp_path):
    def recipe(**kw):
        cfg, _, name = resolve(CifarTrainConfig(**kw))
        return cfg.batch_size, cfg.drop_path_prob, name

    assert recipe(arch="DARTS_ABS") == (96, 0.2, "darts")
    assert recipe(arch="PDARTS_ABS") == (128, 0.3, "pdarts")
    assert recipe(arch="PDARTS_ABS", batch_size=64, drop_path_prob=0.1) == (64, 0.1, "pdarts")  # flags win
    assert recipe(arch=str(PDARTS_ABS)) == (96, 0.2, "darts")  # a bare Genotype(...) names no searcher: DARTS'
    def write_result(folder, searcher, space, arch):  # the fields read_search_result reads, written by hand
        folder.mkdir()
        (folder / "search_result.json").write_text(json.dumps({
            "format": "anglenas-search-result", "version": 2, "searcher": searcher, "space": space,
            "top": [{"arch": arch, "score": None}]}))

    for searcher, expected in (("pertnas", (128, 0.3)), ("pdarts", (128, 0.3)), ("darts", (96, 0.2))):
        folder = tmp_path / searcher
        write_result(folder, searcher, "darts", PDARTS_ABS._asdict())
        save_genotype(PDARTS_ABS, folder / "genotype.json")
        for arch in (folder, folder / "search_result.json", folder / "genotype.json"):
            assert recipe(arch=str(arch)) == (*expected, searcher)
    save_genotype(PDARTS_ABS, tmp_path / "alone.json")
    assert recipe(arch=str(tmp_path / "alone.json")) == (96, 0.2, "darts")  # no search result beside it
    # PertNAS' pairing: one run's normal cell with another run's reduction cell; the recipe is --arch's searcher's
    _, paired, name = resolve(CifarTrainConfig(arch=str(tmp_path / "pertnas"), reduce_arch="DARTS_ABS"))
    assert paired.normal == PDARTS_ABS.normal and paired.reduce == DARTS_ABS.reduce and name == "pertnas"
    write_result(tmp_path / "spos", "spos", "gpu", [0] * 21)
    with pytest.raises(UserError, match="not a DARTS genotype"):
        resolve(CifarTrainConfig(arch=str(tmp_path / "spos")))
