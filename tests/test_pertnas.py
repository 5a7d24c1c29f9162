"""PertNAS: perturb-val scores and restores, the decision rules on hand-made scores, resume, two ranks = one."""
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
from anglenas.searchers.pertnas import search as search_mod
from anglenas.searchers.pertnas.model import CANDIDATES, PertNasNetwork, expand_edge
from anglenas.searchers.pertnas.perturb import Candidate, StepSettings, accuracy, perturb_val, train_steps
from anglenas.searchers.pertnas.search import PertNasConfig, PertNasSearch, members_of_rank, run_pertnas
from anglenas.searchers.pertnas.select import (
    FINE_ORDER,
    coarse_select,
    fine_select,
    node_order,
    to_genotype,
    topology_select,
)
from anglenas.spaces.darts.ops import PRIMITIVES
from anglenas.train.dist import DistEnv

ROOT = Path(__file__).resolve().parents[1]
ID = {name: i for i, name in enumerate(PRIMITIVES)}
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
    scores = perturb_val(model, optimizer, [Candidate(0, j, j) for j in range(3)], batches, (0,), 2,
                         StepSettings(), evaluate)
    # without a: logits (0.5, 0.3, 0) -> always class 0 -> 1/3 right; without b or c: still all right
    assert scores == pytest.approx([100 / 3 - 100, 0.0, 0.0])
    assert int(np.argmin(scores)) == 0 and model.masks == [[1.0, 1.0, 1.0]]


def tiny_net(seed: int = 0) -> PertNasNetwork:
    torch.manual_seed(seed)
    switches = expand_edge([[ID["skip_connect"]]] * 14, 5, [ID["skip_connect"], ID["sep_conv_3x3"],
                                                             ID["max_pool_3x3"]])
    return PertNasNetwork(switches, C=2, num_classes=3, layers=3)


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
    model = tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    train_steps(model, optimizer, tiny_batches((9,), 2), StepSettings())  # momentum buffers exist
    x_val, y_val = next(tiny_batches((7,), 1))
    evaluate = lambda m: float(nn.functional.cross_entropy(m.eval()(x_val), y_val).detach())  # noqa: E731
    before = snapshot(model, optimizer)
    ops = model.switches[5]
    cands = [Candidate(5, p, op) for p, op in enumerate(ops)]
    forward = perturb_val(model, optimizer, cands, tiny_batches, (1,), 3, StepSettings(), evaluate)
    assert_bitwise_equal(before, snapshot(model, optimizer))
    backward = perturb_val(model, optimizer, cands[::-1], tiny_batches, (1,), 3, StepSettings(), evaluate)
    assert backward[::-1] == forward  # each candidate started from the same weights and momentum
    assert_bitwise_equal(before, snapshot(model, optimizer))
    assert len(set(forward)) == 3  # the candidates really differ
    # the original's aliasing bug: fine-tuning accumulates and the weights leave changed
    aliased = perturb_val(model, optimizer, cands, tiny_batches, (1,), 3, StepSettings(), evaluate,
                          restore_model=False)
    assert aliased[0] == forward[0] and aliased[1:] != forward[1:]
    assert not torch.equal(before[0]["classifier.weight"], model.state_dict()["classifier.weight"])


# -- decision rules --------------------------------------------------------------------------------------------
def test_coarse_and_fine_selection_on_hand_scores():
    allowed = [list(CANDIDATES)] * 14
    scores = np.zeros((14, len(PRIMITIVES)))
    scores[0, [ID["sep_conv_5x5"], ID["dil_conv_3x3"]]] = [-3.0, -2.0]
    scores[1, ID["avg_pool_3x3"]] = -1.0  # the rest of edge 1 ties at 0: skip_connect is first in the original
    chosen = coarse_select(scores, allowed)
    assert chosen[0] == sorted([ID["sep_conv_5x5"], ID["dil_conv_3x3"]])
    assert chosen[1] == sorted([ID["avg_pool_3x3"], ID["skip_connect"]])
    assert fine_select([ID["max_pool_3x3"], ID["sep_conv_3x3"]], [0.5, -0.5]) == ID["sep_conv_3x3"]
    assert fine_select([ID["max_pool_3x3"], ID["skip_connect"]], [0.0, 0.0]) == ID["skip_connect"]


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
                        batch_size=4, init_channels=2, layers=1, epochs=1, steps_per_epoch=1, finetune_steps=0,
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
            run_pertnas(cfg)
        assert len(made) == 24
        genotype = run_pertnas(cfg)
    return root, cfg, genotype, made


def test_stub_search_visits_fine_edges_in_the_original_order(tiny, monkeypatch):
    root, cfg, _, _ = tiny
    cfg = replace(cfg, save=str(root / "order"))
    search_mod.run_folder(cfg).mkdir(parents=True)
    folder = search_mod.run_folder(cfg)
    search = PertNasSearch(cfg, DistEnv(), torch.device("cpu"), load_device_cifar(cfg.train_path, "cpu", 4),
                           search_mod.allowed_ops(""), search_mod.open_decisions(cfg, folder), folder)
    visited = []

    def fake_perturb(net, optimizer, candidates, key, steps):
        visited.append(candidates[0].edge)
        return [float(c.op == ID["sep_conv_3x3"]) for c in candidates]  # sep_conv_3x3's removal hurts least

    monkeypatch.setattr(search, "perturb", fake_perturb)
    monkeypatch.setattr(search, "train", lambda *a, **k: None)
    switches = search.fine_grained([[ID["skip_connect"], ID["sep_conv_3x3"]]] * 14)
    assert visited == list(FINE_ORDER) and switches == [[ID["skip_connect"]]] * 14


def test_resumed_search_decided_each_thing_once_and_wrote_the_genotype(tiny):
    root, cfg, genotype, made = tiny
    # 2 members x 14 edges, coarse, 14 fine edges, 3 nodes: each made once across the kill
    assert len(made) == len(set(made)) == 2 * 14 + 1 + 14 + 3
    folder = search_mod.run_folder(cfg)
    assert json.loads((folder / "genotype.json").read_text())["normal"] == [list(g) for g in genotype.normal]
    assert len(genotype.normal) == 8 and (folder / "cell.png").stat().st_size > 0


def test_two_ranks_give_the_same_genotype_as_one_process(tiny):
    """torchrun with 2 gloo ranks (one member each, uninterrupted) = the resumed single process, bit for bit."""
    root, cfg, genotype, _ = tiny
    args = [(f"--{k}" if v else f"--no-{k}") if isinstance(v, bool) else f"--{k}={v}"
            for k, v in vars(cfg).items() if k not in ("save", "note")]
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
    one = json.loads((search_mod.run_folder(cfg) / "decisions.json").read_text())
    two = json.loads((root / "two" / "search-t" / "decisions.json").read_text())
    assert two["population"] == one["population"]  # the all-reduced mean, bit for bit
    assert two["fine"] == one["fine"] and two["topology"] == one["topology"]
    assert json.loads((root / "two" / "search-t" / "genotype.json").read_text())["normal"] == \
        [list(g) for g in genotype.normal]
