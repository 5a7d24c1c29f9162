"""PertNAS: perturb-val scores and restores, the decision rules on hand-made scores, the original's aliasing, resume,
two ranks = one, a search of the NAS-Bench-201 space through the search stage."""
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from anglenas.data.device_cifar import load_device_cifar
from anglenas.operations import Operations
from anglenas.search_result import read_search_result
from anglenas.searchers.pertnas.cell import FINE_ORDER, node_order, to_genotype, topology_select
from anglenas.searchers.pertnas.model import expand_site, masked_network
from anglenas.searchers.pertnas.perturb import Candidate, StepSettings, accuracy, perturb_val, train_steps
from anglenas.searchers.pertnas.phases import PertNasSearch, members_of_rank
from anglenas.searchers.pertnas.search import PertNasConfig, network_size, open_decisions
from anglenas.searchers.pertnas.select import coarse_select, fine_select
from anglenas.searchers.pertnas.sites import Sites
from anglenas.searchers.registry import get_searcher
from anglenas.spaces import get_space
from anglenas.spaces.darts.ops import PRIMITIVES
from anglenas.stages.search import run_search
from anglenas.train.dist import DistEnv

ROOT = Path(__file__).resolve().parents[1]
ID = {name: i for i, name in enumerate(PRIMITIVES)}
DARTS_SITES = Sites.of(Operations.full(get_space("darts")))
torch.set_num_threads(1)


# -- perturb-val ---------------------------------------------------------------------------------------------
class HandNet(nn.Module):
    """One edge of three ops on one-hot inputs: ``a`` copies the input (the label) into the logits, ``b`` adds
    0.5 to class 0, ``c`` adds 0.3 to class 1. With all three every input is classified right."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3)
        with torch.no_grad():
            self.a.weight.copy_(torch.eye(3)), self.a.bias.zero_()
            self.b.weight.zero_(), self.b.bias.copy_(torch.tensor([0.5, 0.0, 0.0]))
            self.c.weight.zero_(), self.c.bias.copy_(torch.tensor([0.0, 0.3, 0.0]))
        self.masks = [[1.0, 1.0, 1.0]]

    def forward(self, x):
        return sum(m * op(x) for m, op in zip(self.masks[0], (self.a, self.b, self.c)))


def test_removing_the_op_that_matters_scores_lowest():
    y = torch.arange(60) % 3  # balanced: 20 per class
    x = torch.eye(3)[y]
    model = HandNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    batches = lambda key, n: iter([(x, y)] * n)  # noqa: E731
    evaluate = lambda m: accuracy(m, [(x, y)])  # noqa: E731
    scores = perturb_val(model, model.masks, optimizer, [Candidate(0, j, j) for j in range(3)], batches, (0,), 2,
                         StepSettings(), evaluate)
    # without a: logits (0.5, 0.3, 0) -> always class 0 -> 1/3 right; without b or c: still all right
    assert scores == pytest.approx([100 / 3 - 100, 0.0, 0.0])
    assert int(np.argmin(scores)) == 0 and model.masks == [[1.0, 1.0, 1.0]]


def tiny_net(seed: int = 0):
    """The DARTS space's relaxed supernet (C=2, 3 cells, 3 classes), edge 5 expanded to 3 ops; (net, masks)."""
    torch.manual_seed(seed)
    switches = expand_site([[ID["skip_connect"]]] * 14, 5, [ID["max_pool_3x3"], ID["skip_connect"],
                                                             ID["sep_conv_3x3"]])
    return masked_network(get_space("darts").scaled(num_classes=3, input_size=32, stem_stride=1), switches, 2, 3)


def tiny_batches(key, n):
    gen = torch.Generator().manual_seed(hash(tuple(key)) % (2 ** 31))
    for _ in range(n):
        yield torch.randn(6, 3, 8, 8, generator=gen), torch.randint(0, 3, (6,), generator=gen)


def snapshot(model, optimizer):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {i: {k: v.clone() for k, v in s.items()} for i, s in optimizer.state_dict()["state"].items()})


def assert_bitwise_equal(a, b):
    assert a[0].keys() == b[0].keys() and a[1].keys() == b[1].keys()
    for k in a[0]:
        assert torch.equal(a[0][k], b[0][k]), k
    for i in a[1]:
        for k in a[1][i]:
            assert torch.equal(a[1][i][k], b[1][i][k]), (i, k)


def test_weights_and_optimizer_restored_bit_exactly_and_order_does_not_matter():
    model, masks = tiny_net()
    optimizer = torch.optim.SGD(model.weights(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    train_steps(model, optimizer, tiny_batches((9,), 2), StepSettings())  # momentum buffers exist
    x_val, y_val = next(tiny_batches((7,), 1))
    evaluate = lambda m: float(nn.functional.cross_entropy(m.eval()(x_val), y_val).detach())  # noqa: E731
    before = snapshot(model, optimizer)
    ops = model.site_ops[0][5]
    cands = [Candidate(5, p, op) for p, op in enumerate(ops)]
    forward = perturb_val(model, masks, optimizer, cands, tiny_batches, (1,), 3, StepSettings(), evaluate)
    assert_bitwise_equal(before, snapshot(model, optimizer))
    backward = perturb_val(model, masks, optimizer, cands[::-1], tiny_batches, (1,), 3, StepSettings(), evaluate)
    assert backward[::-1] == forward  # each candidate started from the same weights and momentum
    assert_bitwise_equal(before, snapshot(model, optimizer))
    assert len(set(forward)) == 3  # the candidates really differ
    # the original's aliasing bug: fine-tuning accumulates and the weights leave changed
    aliased = perturb_val(model, masks, optimizer, cands, tiny_batches, (1,), 3, StepSettings(), evaluate,
                          restore_model=False)
    assert aliased[0] == forward[0] and aliased[1:] != forward[1:]
    assert not torch.equal(before[0]["classifier.weight"], model.state_dict()["classifier.weight"])


# -- decision rules --------------------------------------------------------------------------------------------
def test_coarse_and_fine_selection_on_hand_scores():
    scores = np.zeros((14, len(PRIMITIVES)))
    scores[0, [ID["sep_conv_5x5"], ID["dil_conv_3x3"]]] = [-3.0, -2.0]
    scores[1, ID["avg_pool_3x3"]] = -1.0  # the rest of edge 1 ties at 0: skip_connect is first in the original
    chosen = coarse_select(scores, DARTS_SITES)
    assert chosen[0] == sorted([ID["sep_conv_5x5"], ID["dil_conv_3x3"]])
    assert chosen[1] == sorted([ID["avg_pool_3x3"], ID["skip_connect"]])
    assert fine_select(DARTS_SITES, 0, [ID["max_pool_3x3"], ID["sep_conv_3x3"]], [0.5, -0.5]) == ID["sep_conv_3x3"]
    assert fine_select(DARTS_SITES, 0, [ID["max_pool_3x3"], ID["skip_connect"]], [0.0, 0.0]) == ID["skip_connect"]


def test_topology_rule_and_genotype():
    switches = [[ID["sep_conv_3x3"]]] * 14
    # node 3 has edges 9..13 (inputs c_{k-2}, c_{k-1}, nodes 0, 1, 2): keep the two lowest scores, 13 and 10
    pruned = topology_select(3, switches, {9: 0.4, 10: -1.0, 11: 0.2, 12: 0.0, 13: -2.5})
    assert [e for e in range(9, 14) if pruned[e]] == [10, 13]
    pruned = topology_select(1, pruned, {2: 0.1, 3: 0.1, 4: 0.0})  # tie 2 vs 3 -> lower edge id
    pruned = topology_select(2, pruned, {5: -1.0, 6: 1.0, 7: -0.5, 8: 3.0})
    geno = to_genotype(pruned)
    assert geno.normal == [("sep_conv_3x3", s) for s in (0, 1, 0, 2, 0, 2, 1, 4)] and geno.reduce == geno.normal
    assert sorted(node_order(np.random.default_rng(0))) == [1, 2, 3]
    assert members_of_rank(1, 3, 8) == [1, 4, 7] and members_of_rank(0, 1, 3) == [0, 1, 2]


# -- whole searches on a tiny data set -----------------------------------------------------------------------------
def tiny_tar(path: Path) -> None:
    """12 train + 8 test 16x16 JPEGs of 4 CIFAR classes."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tf:
        for split, n in (("train", 12), ("test", 8)):
            for i in range(n):
                cls = ("airplane", "automobile", "bird", "cat")[i % 4]
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "JPEG")
                info = tarfile.TarInfo(f"{split}/{cls}/{i:04d}.jpg")
                info.size = len(buf.getvalue())
                tf.addfile(info, io.BytesIO(buf.getvalue()))


def operations_file(path: Path) -> None:
    """Cheap ops only (every edge: skip, max pool), so whole searches take seconds."""
    ops = [[ID["max_pool_3x3"], ID["skip_connect"]]] * 14
    path.write_text(json.dumps({"format": "anglenas-operations", "version": 1, "space": "darts",
                                "operations": ops}))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny search killed in the middle of its 25th perturb-val and resumed; the label of every decision made."""
    root = tmp_path_factory.mktemp("pertnas")
    tiny_tar(root / "tiny.tar.gz")
    operations_file(root / "ops.json")
    cfg = PertNasConfig(train_path=str(root / "tiny.tar.gz"), operations_path=str(root / "ops.json"), npop=2,
                        batch_size=4, init_channels=2, depth=1, epochs=1, steps_per_epoch=1, finetune_steps=0,
                        population_extra_steps=0, fine_extra_steps=0, topology_extra_steps=0, val_size=4,
                        device="cpu", threads=1, tensorboard=False, save=str(root / "one"), note="t")
    made, calls = [], []
    real_decided, real_perturb = PertNasSearch.decided, PertNasSearch.perturb

    def decided(self, message):
        made.append(message.split(" (")[0])
        real_decided(self, message)

    def perturb(self, *args):
        calls.append(1)
        if len(calls) == 25:
            raise KeyboardInterrupt
        return real_perturb(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PertNasSearch, "decided", decided)
        mp.setattr(PertNasSearch, "perturb", perturb)
        with pytest.raises(KeyboardInterrupt):
            run_search(get_searcher("pertnas"), cfg)
        assert len(made) == 24
        genotype = run_search(get_searcher("pertnas"), cfg).best
    return root, cfg, genotype, made


def stub_search(cfg: PertNasConfig, operations: Operations) -> PertNasSearch:
    """The search of ``operations`` with ``cfg`` on the tiny data, its run folder new."""
    sites, folder = Sites.of(operations), cfg.run_folder()
    folder.mkdir(parents=True)
    space = operations.space.scaled(num_classes=4, input_size=32, stem_stride=1)
    return PertNasSearch(cfg, DistEnv(), torch.device("cpu"), load_device_cifar(cfg.train_path, "cpu", 4), sites,
                         space, network_size(cfg, sites), open_decisions(cfg, folder), folder)


def recording(search: PertNasSearch, monkeypatch, score) -> list[list[Candidate]]:
    """Replace training and perturb-val by stubs; perturb-val scores candidate c ``score(c)``. The calls' candidates."""
    calls = []

    def fake_perturb(net, masks, optimizer, candidates, key, steps):
        calls.append(list(candidates))
        return [score(c) for c in candidates]

    monkeypatch.setattr(search, "perturb", fake_perturb)
    monkeypatch.setattr(search, "train", lambda *a, **k: None)
    return calls


def test_stub_search_visits_fine_edges_in_the_original_order(tiny, monkeypatch):
    root, cfg, _, _ = tiny
    search = stub_search(replace(cfg, save=str(root / "order")), Operations.full(get_space("darts")))
    calls = recording(search, monkeypatch, lambda c: float(c.op == ID["sep_conv_3x3"]))  # its removal hurts least
    switches = search.fine_grained([[ID["skip_connect"], ID["sep_conv_3x3"]]] * 14)
    assert [c[0].site for c in calls] == list(FINE_ORDER) and switches == [[ID["skip_connect"]]] * 14


def test_fine_grained_visits_skip_before_the_pools_as_the_original(tiny, monkeypatch):
    """The original's op indices put skip_connect (0) before the pools (1, 2): with aliased weights the candidate
    visited second starts from the first one's fine-tuning, so the order is part of the result."""
    root, cfg, _, _ = tiny
    search = stub_search(replace(cfg, save=str(root / "skip-first"), original_aliasing=True),
                         Operations.full(get_space("darts")))
    calls = recording(search, monkeypatch, lambda c: 0.0)
    switches = [[ID["max_pool_3x3"], ID["skip_connect"]]] * 7 + [[ID["avg_pool_3x3"], ID["skip_connect"]]] * 7
    search.fine_grained([list(s) for s in switches])
    for cands in calls:  # positions in the network: the pool is built first (PRIMITIVES order), skip second
        assert [(c.op, c.position) for c in cands] == [(ID["skip_connect"], 1), (switches[cands[0].site][0], 0)]
    assert [row["kept"] for row in search.decisions["fine"]] == [ID["skip_connect"]] * 14  # a tie: the first


@pytest.mark.parametrize("aliasing", [False, True])
def test_topology_fine_tunes_all_14_edges_in_order_only_with_original_aliasing(tiny, monkeypatch, aliasing):
    root, cfg, _, _ = tiny
    search = stub_search(replace(cfg, save=str(root / f"topology-{aliasing}"), original_aliasing=aliasing),
                         Operations.full(get_space("darts")))
    scores = {2: 0.5, 3: -1.0, 4: 0.0, 5: 2.0, 6: -3.0, 7: 1.0, 8: -2.0, 9: 0.0, 10: 1.0, 11: -1.0, 12: 3.0, 13: 2.0}
    calls = recording(search, monkeypatch, lambda c: scores.get(c.site, 9.0))
    switches = search.topology([[ID["sep_conv_3x3"]]] * 14)
    order = node_order(np.random.default_rng([cfg.seed, 3]))
    kept = {1: [3, 4], 2: [6, 8], 3: [9, 11]}  # per node the 2 lowest scores (ties: the lower edge)
    assert [row["node"] for row in search.decisions["topology"]] == order
    assert [row["kept"] for row in search.decisions["topology"]] == [kept[n] for n in order]
    assert [e for e in range(14) if switches[e]] == [0, 1, *kept[1], *kept[2], *kept[3]]
    removed: set[int] = set()
    for node, cands in zip(order, calls):
        live = {1: [2, 3, 4], 2: [5, 6, 7, 8], 3: [9, 10, 11, 12, 13]}[node]
        if aliasing:  # every edge in edge order, removed ones masking nothing
            assert [c.site for c in cands] == list(range(14))
            assert [c.site for c in cands if c.position is None] == sorted(removed)
        else:
            assert [c.site for c in cands] == live and all(c.position == 0 for c in cands)
        removed |= set(live) - set(kept[node])


def test_original_aliasing_is_the_original_loop():
    """perturb_val without restoring the model = the original's loop written out: mask, reload the optimizer
    backup, fine-tune the live weights, score against the accuracy before the first candidate, unmask."""
    model, masks = tiny_net(1)
    optimizer = torch.optim.SGD(model.weights(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    train_steps(model, optimizer, tiny_batches((9,), 2), StepSettings())
    x_val, y_val = next(tiny_batches((7,), 1))
    evaluate = lambda m: float(nn.functional.cross_entropy(m.eval()(x_val), y_val).detach())  # noqa: E731
    start = snapshot(model, optimizer)
    cands = [Candidate(5, p, op) for p, op in enumerate(model.site_ops[0][5])]
    aliased = perturb_val(model, masks, optimizer, cands, tiny_batches, (1,), 3, StepSettings(), evaluate,
                          restore_model=False)
    after = snapshot(model, optimizer)

    model.load_state_dict(start[0])
    optimizer_backup = {k: v for k, v in optimizer.state_dict().items()}
    optimizer_backup["state"] = start[1]
    before, hand = evaluate(model), []
    for c in cands:
        masks[5][c.position] = 0.0
        optimizer.load_state_dict({"state": {i: {k: v.clone() for k, v in s.items()} for i, s in start[1].items()},
                                   "param_groups": optimizer_backup["param_groups"]})
        train_steps(model, optimizer, tiny_batches((1, 5, c.op), 3), StepSettings())
        hand.append(evaluate(model) - before)
        masks[5][c.position] = 1.0
    assert aliased == hand
    assert all(torch.equal(after[0][k], v) for k, v in model.state_dict().items())


def test_resumed_search_decided_each_thing_once_and_wrote_the_genotype(tiny):
    _, cfg, genotype, made = tiny
    # 2 members x 14 edges, coarse, 14 fine edges, 3 nodes: each made once across the kill
    assert len(made) == len(set(made)) == 2 * 14 + 1 + 14 + 3
    folder = cfg.run_folder()
    assert json.loads((folder / "genotype.json").read_text())["normal"] == [list(g) for g in genotype.normal]
    assert len(genotype.normal) == 8 and (folder / "cell.png").stat().st_size > 0
    result = read_search_result(folder)
    assert result.searcher == "pertnas" and result.space == "darts" and result.best == genotype
    # 2 x 14 population trainings, 14 fine-grained, 3 topology; fine-tunes of 1 step: 2 x 14 x 2 + 14 x 2 + 12
    assert {k: result.cost[k] for k in ("trainings", "training_steps", "finetune_steps")} == \
        {"trainings": 45, "training_steps": 45, "finetune_steps": 56 + 28 + 12}


def test_two_ranks_give_the_same_genotype_as_one_process(tiny):
    """torchrun with 2 gloo ranks (one member each, uninterrupted) = the resumed single process, bit for bit."""
    root, cfg, genotype, _ = tiny
    args = [(f"--{k}" if v else f"--no-{k}") if isinstance(v, bool) else f"--{k}={v}"
            for k, v in vars(cfg).items() if k not in ("save", "note") and v is not None]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(ROOT / "darts-master" / "search_evolutionary.py"), *args,
                             f"--save={root / 'two'}", "--note=t"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
    assert proc.returncode == 0, err[-2000:]
    one = json.loads((cfg.run_folder() / "decisions.json").read_text())
    two = json.loads((root / "two" / "search-t" / "decisions.json").read_text())
    assert two["population"] == one["population"]  # the all-reduced mean, bit for bit
    assert two["fine"] == one["fine"] and two["topology"] == one["topology"]
    assert json.loads((root / "two" / "search-t" / "genotype.json").read_text())["normal"] == \
        [list(g) for g in genotype.normal]


# -- other spaces ----------------------------------------------------------------------------------------------------
NB201_OPS = [[0, 1], [1, 3, 4], [2], [0, 2, 3, 4], [1, 3], [0, 1, 2, 3, 4]]
"""A shrunk NB201 space (ops none 0, skip 1, conv1x1 2, conv3x3 3, pool 4); edge 2 keeps one op."""


def test_nb201_sites_and_decisions_on_hand_scores():
    sites = Sites.of(Operations(get_space("nb201"), NB201_OPS))
    assert not sites.darts_cell and sites.fine_order == (5, 4, 3, 2, 1, 0)
    assert sites.candidates == NB201_OPS  # none is a candidate; the space's order
    scores = np.zeros((6, 5))
    scores[1] = [9, 0.5, 9, -1.0, 0.5]  # skip and pool tie at 0.5: skip is first in the space's order
    scores[3] = [-2.0, 9, -0.5, -2.0, 0.0]  # none and conv3x3 tie: none, first, and conv3x3
    scores[5] = [0.0, -1.0, 2.0, -3.0, 1.0]
    assert coarse_select(scores, sites) == [[0, 1], [1, 3], [2], [0, 3], [1, 3], [1, 3]]
    assert fine_select(sites, 3, [0, 3], [-2.0, -2.0]) == 0 and fine_select(sites, 3, [3, 0], [-2.0, -2.5]) == 0
    assert sites.architecture([[0], [4], [2], [3], [1], [2]]) == [0, 4, 2, 3, 1, 2]


def test_darts_operations_need_a_real_op_on_every_edge():
    ops = [[ID["none"], ID["sep_conv_3x3"]]] * 14
    ops[6] = [ID["none"]]
    with pytest.raises(Exception, match=r"edge\(s\) \[6\] of the operations keep only 'none'"):
        Sites.of(Operations(get_space("darts"), ops))


def test_nb201_search_through_the_stage_obeys_the_operations_file(tiny):
    root = tiny[0]
    ops_path = root / "nb201-ops.json"
    ops_path.write_text(json.dumps({"format": "anglenas-operations", "version": 1, "space": "nb201",
                                    "operations": NB201_OPS}))
    cfg = PertNasConfig(train_path=str(root / "tiny.tar.gz"), operations_path=str(ops_path), npop=1, batch_size=4,
                        init_channels=4, depth=1, epochs=1, steps_per_epoch=1, finetune_steps=0,
                        population_extra_steps=0, fine_extra_steps=0, val_size=4, device="cpu", threads=1,
                        tensorboard=False, save=str(root / "nb201"), note="t")
    result = run_search(get_searcher("pertnas"), cfg)
    arch = result.best
    assert result.space == "nb201" and len(arch) == 6 and all(op in site for op, site in zip(arch, NB201_OPS))
    decisions = json.loads((cfg.run_folder() / "decisions.json").read_text())
    assert [row["site"] for row in decisions["fine"]] == [5, 4, 3, 2, 1, 0] and decisions["topology"] == []
    assert [row["kept"] for row in sorted(decisions["fine"], key=lambda r: r["site"])] == arch
    assert all(set(row["ops"]) <= set(coarse) for row, coarse in
               zip(sorted(decisions["fine"], key=lambda r: r["site"]), decisions["coarse"]))
    assert read_search_result(cfg.run_folder()).best == arch and not (cfg.run_folder() / "genotype.json").exists()
    # 5 sites with a choice: 5 population trainings, 5 fine-grained ones; 1-step fine-tunes: 2+3+4+2+5 and 5 x 2
    assert {k: result.cost[k] for k in ("trainings", "finetune_steps")} == {"trainings": 10, "finetune_steps": 26}
