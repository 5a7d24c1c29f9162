"""NB201 space and ground-truth API against the shipped table and hand-written cells."""
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anglenas.errors import UserError
from anglenas.nb201.api import TABLE, Benchmark
from anglenas.spaces.nb201 import cells as space

ROOT = Path(__file__).resolve().parents[1]
BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


@pytest.fixture(scope="module")
def rows():
    with open(TABLE, newline="") as fh:
        return list(csv.reader(fh))[1:]


def test_enumeration_covers_exactly_the_table(api, rows):
    enumerated = {space.to_str(tuple(c)) for c in space.all_cells()}
    assert len(enumerated) == 5 ** 6 == space.NUM_ARCHS
    assert enumerated == {r[3] for r in rows}


def test_index_is_the_table_row(api, rows):
    assert len(api) == len(rows) == 15625
    assert list(api) == [r[3] for r in rows]
    for i in (0, 1, 857, 6111, 9930, 15624):
        assert api.query_index_by_arch(rows[i][3]) == i
        assert api.accuracy(i, "cifar10") == float(rows[i][0])
        assert api.accuracy(rows[i][3], "cifar100") == float(rows[i][1])
        assert api.accuracy(space.parse(rows[i][3]), "ImageNet16-120") == float(rows[i][2])


def test_published_optima(api):
    # README of the data: 94.373 at 6111 (tied with 13714), 73.513 at 9930, 47.311 at 857
    c10 = api.accuracies("cifar10")
    assert set(np.flatnonzero(c10 == c10.max())) == {6111, 13714} and round(c10.max(), 3) == 94.373
    assert int(np.argmax(api.accuracies("cifar100"))) == 9930
    assert int(np.argmax(api.accuracies("in16"))) == 857
    assert api.query_index_by_arch(BEST_C10) == 6111


def test_parse_by_hand():
    s = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|none~2|"
    # edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2
    assert space.parse(s) == (4, 2, 1, 2, 1, 0)
    assert space.to_str((4, 2, 1, 2, 1, 0)) == s


@pytest.mark.parametrize("bad, word", [
    ("", "node"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "node"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|", "input"),
    ("|conv~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|", "unknown operation"),
    ("|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|", "op~0"),
    ("nor_conv_3x3~0+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|", "'|'"),
])
def test_parse_errors(bad, word):
    with pytest.raises(UserError, match=word):
        space.parse(bad)


def test_dead_cells_by_hand():
    # dead: all paths to node 3 pass a `none`; count by brute force over the definition of node outputs
    cells = space.all_cells()
    dead = space.is_dead(cells)
    def zero(cell):
        z = {0: False}
        for node in (1, 2, 3):
            z[node] = all(cell[space.edge_index(node, j)] == 0 or z[j] for j in range(node))
        return z[3]
    assert dead.tolist() == [zero(c) for c in cells.tolist()]
    assert not space.is_dead(np.array([space.parse(BEST_C10)]))[0]


def test_query_cli():
    q = [sys.executable, str(ROOT / "nas-bench-201" / "query.py")]
    out = subprocess.run([*q, "--arch", BEST_C10], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "index 6111" in out.stdout and "94.37%" in out.stdout
    assert "73.22%" in out.stdout and "46.71%" in out.stdout
    bad = subprocess.run([*q, "--arch", "|nor_conv_3x3~0|+|x"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")
    assert "Traceback" not in bad.stderr


def test_official_benchmark_file_through_nats_bench(monkeypatch, tmp_path, rows):
    """The official-file path maps NATS-Bench's calls (arch, get_more_info hp=200) onto the same API."""
    import types
    calls = []

    class FakeAPI:
        def __len__(self):
            return 3

        def arch(self, i):
            return rows[[5, 6111, 857][i]][3]

        def get_more_info(self, i, dataset, hp, is_random):
            calls.append((dataset, hp, is_random))
            return {"test-accuracy": {"cifar10": 90.0, "cifar100": 70.0, "ImageNet16-120": 40.0}[dataset] + i}

    fake = types.ModuleType("nats_bench")
    fake.create = lambda path, space, fast_mode, verbose: FakeAPI()
    monkeypatch.setitem(sys.modules, "nats_bench", fake)
    path = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    path.mkdir()
    api = Benchmark.load(path)
    assert len(api) == 3 and list(api)[1] == BEST_C10
    assert api.query_index_by_arch(BEST_C10) == 1
    assert api.accuracy(1, "cifar10") == 91.0 and api.accuracy(BEST_C10, "ImageNet16-120") == 41.0
    assert set(calls) == {(d, "200", False) for d in ("cifar10", "cifar100", "ImageNet16-120")}


def test_imagenet16_pickles(tmp_path):
    import pickle

    import torch

    from anglenas.nb201.data import NB201Data, NB201DataConfig
    rng = np.random.default_rng(0)
    first = None
    for name in [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]:
        labels = rng.integers(1, 1001, 40).tolist()  # 1-based over 1,000 classes
        labels[:2] = [1, 120]
        data = rng.integers(0, 256, (40, 3 * 16 * 16), dtype=np.uint8)
        first = data[0] if first is None else first
        with open(tmp_path / name, "wb") as fh:
            pickle.dump({"data": data, "labels": labels}, fh)
    d = NB201Data(NB201DataConfig(dataset="ImageNet16-120", data_dir=str(tmp_path)), torch.device("cpu"))
    assert d.train_x.shape[1:] == (3, 16, 16) and d.input_size == 16 and d.pad == 2
    assert np.array_equal(d.train_x[0].numpy(), first.reshape(3, 16, 16))  # CHW rows, label 1 -> class 0
    assert int(d.train_y[0]) == 0 and int(d.train_y[1]) == 119
    assert int(d.train_y.min()) == 0 and int(d.train_y.max()) == 119 and d.num_classes == 120
    with open(tmp_path / "val_data", "rb") as fh:
        val = pickle.load(fh)
    assert len(d.valid_y) == sum(1 for y in val["labels"] if y <= 120) // 2
    with pytest.raises(UserError, match="missing"):
        NB201Data(NB201DataConfig(dataset="ImageNet16-120", data_dir=str(tmp_path / "nope")), torch.device("cpu"))


# -- the registered "nb201" SearchSpace ----------------------------------------------------------------------------
def test_registered_space_sites_and_ops():
    from anglenas.spaces import get_space
    from anglenas.spaces.nb201.space import NB201Space

    s = get_space("nb201")
    assert isinstance(s, NB201Space) and s.channels == 16 and s.cells_per_stage == 5 and s.num_cells == 15
    assert s.op_names == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert [s.site_name(i) for i in range(6)] == ["edge 1<-0", "edge 2<-0", "edge 2<-1", "edge 3<-0", "edge 3<-1",
                                                  "edge 3<-2"]
    assert s.size_of(s.initial_operations()) == 15625
    # paths 0-3, 0-2-3, 0-1-2-3, 0-1-3 as edge positions, written out by hand
    assert s.angle_paths == ((3,), (1, 5), (0, 2, 5), (0, 4)) and s.path_breakers == (0,)
    assert tuple(s.published["NB201_BEST_CIFAR10"]) == space.parse(BEST_C10)
    small = s.scaled(0.5, 16, 120)
    assert (small.channels, small.input_size, small.num_classes, small.cells_per_stage) == (8, 16, 120, 5)
    with pytest.raises(UserError, match="stem"):
        s.scaled(1.0, 64, 10, stem_stride=2)
    with pytest.raises(UserError, match="edge 2<-1"):
        s.check_arch([3, 3, 7, 1, 3, 2])


def test_flops_table_by_hand():
    """C=4, N=1, 8x8 input, 10 classes, counted by hand (multiply-accumulates; Linear (2 * in - 1) * out)."""
    from anglenas.spaces.nb201.space import NB201_SPACE

    s = NB201_SPACE.sized(4, 1, 8, 10)
    t = s.flops_table()
    assert t.pre == 3 * 4 * 9 * 8 * 8
    reduction = 4 * 8 * 9 * 4 * 4 + 8 * 8 * 9 * 4 * 4 + 4 * 8 * 4 * 4  # conv_a (s2) + conv_b + 1x1 downsample
    assert reduction == 8 * 16 * 9 * 2 * 2 + 16 * 16 * 9 * 2 * 2 + 8 * 16 * 2 * 2  # the second one costs the same
    assert t.post == 2 * reduction + (2 * 16 - 1) * 10
    conv3 = 4 * 4 * 9 * 64 + 8 * 8 * 9 * 16 + 16 * 16 * 9 * 4  # one cell per stage
    conv1 = conv3 // 9
    assert all(row == [0, 0, conv1, conv3, 0] for row in t.layers)
    conv3_params = (16 * 9 + 2 * 4) + (64 * 9 + 2 * 8) + (256 * 9 + 2 * 16)  # conv + affine BN
    assert t.layer_params[4][3] == conv3_params
    for arch in ([3, 3, 3, 1, 3, 2], [0, 0, 0, 0, 0, 0], [4, 2, 1, 2, 1, 0]):
        assert t.arch_flops(arch) == s.counted_flops(arch)
        assert t.arch_params(arch) == sum(p.numel() for p in s.network(arch).parameters())


def test_space_sampler_and_network_from_supernet():
    import torch

    from anglenas.spaces.nb201.space import NB201_SPACE, CellPathSampler

    s = NB201_SPACE.sized(4, 1, 8, 10)
    ops = [[3], [0, 1], [0], [0, 4], [0], [0]]
    sampler = s.train_sampler(ops, seed=2)
    assert isinstance(sampler, CellPathSampler) and sampler.num_cells == 3
    for step in range(10):
        (path,) = sampler.paths(step)
        assert len(path) == 3 and all(c[0] == 3 and c[1] == 1 and c[3] == 4 for c in path)
    torch.manual_seed(0)
    supernet = s.supernet().eval()
    cells = [(3, 1, 2, 4, 0, 3), (2, 0, 4, 1, 3, 0), (3, 3, 3, 1, 3, 2)]
    net = s.network(cells).eval()
    net.load_state_dict(s.path_state_dict(supernet.state_dict(), cells), strict=True)
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(net(x), supernet(x, cells), atol=1e-6)
    with pytest.raises(UserError, match="dropout"):
        s.network(cells[0], dropout=0.2)
