"""Stand-alone NB201 cells: the network against the supernet path, the original's cell enumeration re-derived
from NB201's `Structure.gen_all`, the angle against the block decomposition, exact resumption, the scripts."""
import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from anglenas.checkpoint import load_checkpoint
from anglenas.errors import UserError
from anglenas.nb201.standalone import (
    ORIGINAL_INDICES,
    StandaloneConfig,
    StandaloneData,
    StandaloneTauConfig,
    original_cells,
    run_standalone_tau,
    standalone_angle,
    tau_report,
    train_cell,
)
from anglenas.spaces.nb201 import cells as space
from anglenas.spaces.nb201.network import NB201Network, path_state_dict
from anglenas.spaces.nb201.supernet import NB201SuperNet

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(dataset="embedded", channels=4, cells_per_stage=1, resolution=8, train_limit=128, test_limit=64,
            epochs=2, batch_size=32, lr=0.05, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def _randomised_supernet(seed=0):
    torch.manual_seed(seed)
    model = NB201SuperNet(channels=4, cells_per_stage=1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            if m.affine:
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def test_network_computes_the_supernet_path():
    model = _randomised_supernet()
    x = torch.randn(2, 3, 8, 8)
    cells = [(3, 1, 2, 0, 4, 3), (0, 0, 0, 0, 0, 0), (2, 4, 1, 3, 0, 2)]
    for path in (cells[0], cells):
        net = NB201Network(path, channels=4, cells_per_stage=1).eval()
        net.load_state_dict(path_state_dict(model.state_dict(), path), strict=True)
        assert torch.allclose(net(x), model(x, path), atol=1e-6)


def _gen_all_strings():
    """NB201's Structure.gen_all over the nas-bench-102 op list, written out: node 1's combinations outermost;
    within a node, input 0 varies slowest (get_combination)."""
    def combinations(num):
        combs = [[]]
        for i in range(num):
            combs = [c + [f"{op}~{i}"] for c in combs for op in space.OPS]
        return combs

    archs = [[c] for c in combinations(1)]
    for node in (2, 3):
        archs = [prev + [c] for prev in archs for c in combinations(node)]
    return ["+".join("|" + "|".join(node) + "|" for node in arch) for arch in archs]


def test_original_cells_follow_gen_all_order(api):
    strings = _gen_all_strings()
    assert len(strings) == 15625
    cells = original_cells()
    assert len(cells) == 50 and ORIGINAL_INDICES[:3] == (0, 200, 400)
    for k, cell in zip(ORIGINAL_INDICES, cells):
        assert space.to_str(tuple(cell)) == strings[k]
    assert api.indices_of(cells[1:2])[0] == api.query_index_by_arch(strings[200])
    # every one of the 50 reaches the output through edge 3<-0 alone (3<-1 and 3<-2 are `none`)
    assert (cells[:, 4] == space.NONE).all() and (cells[:, 5] == space.NONE).all()
    with pytest.raises(UserError, match="out of range"):
        original_cells([15625])


FIXED = ["lastact.0.weight", "lastact.0.bias", "classifier.weight", "classifier.bias", "stem.0.weight",
         "stem.1.weight", "stem.1.bias"] + [f"layers.{i}.{name}" for i in (1, 3) for name in (
             "conv_a.op.1.weight", "conv_a.op.2.weight", "conv_a.op.2.bias", "conv_b.op.1.weight",
             "conv_b.op.2.weight", "conv_b.op.2.bias", "downsample.1.weight")]
"""``get_arch_angle``'s fixed part for C=4, N=1 (cells are layers 0, 2, 4; reductions 1, 3)."""


def _hand_angle(parts, a, b):
    def vec(state):
        return np.concatenate([np.full(p * 9, 1 / 9) if isinstance(p, int) else state[p].numpy().ravel()
                               for p in parts])
    va, vb = vec(a), vec(b)
    return np.arccos(np.dot(va, vb) / np.linalg.norm(va) / np.linalg.norm(vb))


def test_standalone_angle_is_the_spec_vector():
    torch.manual_seed(0)
    widths = {0: 4, 2: 8, 4: 16}
    # (3, 4, 1, 2, 0, 3): edges 1<-0 conv3, 2<-0 pool, 2<-1 skip, 3<-0 conv1, 3<-1 none, 3<-2 conv3; path-major:
    # [0,3] -> 3<-0; [0,2,3] -> pool, 3<-2; [0,1,2,3] -> 1<-0, (skip), 3<-2; [0,1,3] crosses `none`: dropped
    cases = {(3, 4, 1, 2, 0, 3): [f"layers.{i}.edges.3.op.1.weight" for i in widths]
             + [x for i in widths for x in (widths[i], f"layers.{i}.edges.5.op.1.weight")]
             + [x for i in widths for x in (f"layers.{i}.edges.0.op.1.weight", f"layers.{i}.edges.5.op.1.weight")],
             (0, 0, 0, 0, 0, 0): []}
    for cell, path_parts in cases.items():
        net = NB201Network(cell, channels=4, cells_per_stage=1)
        init = {k: v.clone() for k, v in net.state_dict().items()}
        final = {k: v + 0.5 * torch.randn_like(v) if v.is_floating_point() else v for k, v in init.items()}
        expected = _hand_angle(FIXED + path_parts, init, final)
        assert standalone_angle(net, init, final) == pytest.approx(expected, abs=1e-9)
    doubled = {k: 2 * v for k, v in init.items()}  # (the all-none cell: no pooling constant in V)
    assert standalone_angle(net, init, doubled) == pytest.approx(0.0, abs=1e-6)


def test_tau_report_counts_pairs():
    live = ["|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"] * 3
    dead = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    records = [{"arch": a, "angle_init_final": x, "benchmark_top1": g, "top1": r}
               for a, x, g, r in [(live[0], 0.1, 50.0, 30.0), (live[1], 0.2, 70.0, 20.0), (live[2], 0.3, 60.0, 40.0),
                                  (dead, 0.01, 10.0, 10.0)]]
    tau = tau_report(records, "cifar10")
    assert tau["live_cells"] == 3
    assert tau["angle_vs_ground_truth_live"] == pytest.approx(1 / 3)  # pairs: +, +, - (of 3)
    assert tau["angle_vs_reached_live"] == pytest.approx(1 / 3)
    assert tau["reached_vs_ground_truth_live"] == pytest.approx(-1 / 3)
    assert tau["angle_vs_ground_truth"] == pytest.approx(4 / 6)  # the dead cell adds 3 concordant pairs
    assert tau["paper_angle_vs_ground_truth"] == 0.833


def test_a_stopped_run_resumes_to_the_uninterrupted_weights(tmp_path, api):
    cfg = StandaloneConfig(**TINY)
    data = StandaloneData(cfg, torch.device("cpu"))
    cell = space.parse(api[6111])
    full = train_cell(cfg, cell, tmp_path / "full", data, api, torch.device("cpu"))
    assert train_cell(cfg, cell, tmp_path / "cut", data, api, torch.device("cpu"), stop_at=3) is None
    assert not (tmp_path / "cut" / "summary.json").exists()
    resumed = train_cell(cfg, cell, tmp_path / "cut", data, api, torch.device("cpu"))
    a, b = (load_checkpoint(tmp_path / run / "weights-final.pt") for run in ("full", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(cfg.seed)
    fresh = NB201Network(cell, 10, 4, 1).state_dict()
    init = load_checkpoint(tmp_path / "full" / "weights-init.pt")
    assert all(torch.equal(fresh[k], init[k]) for k in fresh)
    assert full["top1"] == resumed["top1"] and full["test_images"] == 64
    assert full["benchmark_top1"] == api.accuracy(6111, "cifar10") and full["benchmark_index"] == 6111
    assert full["angle_init_final"] > 0
    other = StandaloneConfig(**{**TINY, "lr": 0.1})
    with pytest.raises(UserError, match="other settings"):
        train_cell(other, cell, tmp_path / "full", data, api, torch.device("cpu"))


def test_train_arch_script_writes_the_summary(tmp_path, api):
    main = runpy.run_path(str(ROOT / "nas-bench-201" / "train_arch.py"))["main"]
    main(["--demo", "--index", "6111", "--save", str(tmp_path), "--epochs", "1", "--train_limit", "64",
          "--test_limit", "32", "--channels", "4", "--resolution", "8"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["benchmark_top1"] == pytest.approx(94.37, abs=0.01) and 0 <= summary["top1"] <= 100
    assert (tmp_path / "weights-init.pt").is_file() and (tmp_path / "weights-final.pt").is_file()
    with pytest.raises(SystemExit):
        main(["--demo", "--save", str(tmp_path)])  # neither --arch nor --index


def test_standalone_tau_ranks_the_finished_cells(tmp_path):
    cfg = StandaloneTauConfig(**{**TINY, "epochs": 1, "train_limit": 64}, cells="200,600", save=str(tmp_path))
    report = run_standalone_tau(cfg)
    on_disk = json.loads((tmp_path / "standalone_tau.json").read_text())
    assert on_disk["cells_done"] == 2 and [c["original_index"] for c in on_disk["cells"]] == [200, 600]
    assert report["tau"]["angle_vs_ground_truth"] in (-1.0, 1.0)
    assert (tmp_path / "cell-00200" / "summary.json").is_file() and (tmp_path / "standalone_angle.png").is_file()
