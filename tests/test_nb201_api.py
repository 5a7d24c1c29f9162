"""The NB201 / NATS-Bench calls of `Benchmark` against the shipped CSV read directly, hand-counted costs,
a README-style user script, an official API stand-in, and the errors for what the table does not hold."""
import csv
import random
import runpy
import textwrap
import types

import numpy as np
import pytest
import torch

from anglenas.errors import UserError
from anglenas.nb201.api import TABLE, Benchmark
from anglenas.spaces.nb201 import cells as space
from anglenas.spaces.nb201.network import NB201Network, cell_cost, counted_cost

BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


@pytest.fixture(scope="module")
def rows():
    with open(TABLE, newline="") as fh:
        return list(csv.DictReader(fh))


def test_get_more_info_and_meta_info_return_the_table_values(api, rows):
    assert api.get_more_info(6111, "cifar10", hp="200")["test-accuracy"] == pytest.approx(94.3733333, abs=1e-6)
    for i in (0, 857, 9930, 15624):
        r = rows[i]
        assert api.arch(i) == r["ArchitectureString"]
        assert api.get_more_info(i, "cifar10")["test-accuracy"] == float(r["CIFAR10TestAccuracy200Epochs"])
        assert api.get_more_info(r["ArchitectureString"], "cifar100", None, "200", False)["test-accuracy"] == \
            float(r["CIFAR100TestAccuracy200Epochs"])
        assert api.get_more_info(i, "ImageNet16-120", iepoch=199, hp=200)["test-accuracy"] == \
            float(r["ImageNetTestAccuracy200Epochs"])
        info = api.query_meta_info_by_index(i)
        assert info.get_metrics("cifar10", "ori-test")["accuracy"] == float(r["CIFAR10TestAccuracy200Epochs"])
        assert info.get_metrics("cifar100", "x-test")["accuracy"] == float(r["CIFAR100TestAccuracy200Epochs"])
        assert info.get_metrics("ImageNet16-120", "x-test")["accuracy"] == float(r["ImageNetTestAccuracy200Epochs"])
    # NB201 v1.0 wrote the schedule as use_12epochs_result: False means the 200-epoch results
    assert api.get_more_info(6111, "cifar10", None, False)["test-accuracy"] == api.accuracy(6111)


def test_what_the_table_lacks_is_a_clear_user_error(api):
    info = api.query_meta_info_by_index(6111)
    cases = [lambda: api.get_more_info(1, "cifar10", hp="12"),
             lambda: api.get_more_info(1, "cifar10", iepoch=10),
             lambda: api.get_more_info(1, "cifar10", is_random=True),
             lambda: api.get_more_info(1, "cifar10-valid"),
             lambda: api.get_more_info(1, "cifar10")["valid-accuracy"],
             lambda: api.query_meta_info_by_index(1, hp="12"),
             lambda: info.get_metrics("cifar10", "train"),
             lambda: info.get_metrics("cifar100", "x-valid"),
             lambda: info.get_metrics("cifar100", "x-test")["loss"],
             lambda: api.query_by_index(1, "cifar100")]
    for case in cases:
        with pytest.raises(UserError, match="official benchmark file") as exc:
            case()
        assert "\n" not in str(exc.value)
    with pytest.raises(UserError, match="hp must be"):
        api.get_more_info(1, "cifar10", hp="50")
    with pytest.raises(AttributeError):
        api.no_such_call()


def _hand_cost(cell, classes, side, c=16, n=5):
    """FLOPs (MACs + classifier bias) and parameters of NB201's network, counted by hand."""
    convs = [(3, c, 3, side)]  # (c_in, c_out, kernel, output side)
    bn = [c, 4 * c]  # stem and lastact BN channels
    for stage, (ch, s) in enumerate([(c, side), (2 * c, side // 2), (4 * c, side // 4)]):
        if stage:
            convs += [(ch // 2, ch, 3, s), (ch, ch, 3, s), (ch // 2, ch, 1, s)]
            bn += [ch, ch]
        for op in cell:
            if op in (space.CONV1, space.CONV3):
                convs += [(ch, ch, 1 if op == space.CONV1 else 3, s)] * n
                bn += [ch] * n
    flops = sum(i * o * k * k * s * s for i, o, k, s in convs) + 4 * c * classes + classes
    params = sum(i * o * k * k for i, o, k, _ in convs) + 2 * sum(bn) + 4 * c * classes + classes
    return flops, params


def test_cost_info_is_hand_counted(api):
    assert _hand_cost((0,) * 6, 10, 32) == (7_783_050, 73_306)
    assert counted_cost((3,) * 6) == _hand_cost((3,) * 6, 10, 32) == (220_119_690, 1_531_546)
    rng = np.random.default_rng(0)
    small = dict(channels=4, cells_per_stage=2)
    for cell in [tuple(rng.integers(5, size=6)) for _ in range(2)]:
        assert cell_cost(cell, 120, 16, **small) == counted_cost(cell, 120, 16, **small) == \
            _hand_cost(cell, 120, 16, c=4, n=2)
    index = api.query_index_by_arch(BEST_C10)
    flops, params = _hand_cost(space.parse(BEST_C10), 10, 32)
    cost = api.get_cost_info(index, "cifar10")
    assert cost["flops"] == pytest.approx(flops / 1e6) and cost["params"] == pytest.approx(params / 1e6)
    assert cost["latency"] is None
    assert api.query_meta_info_by_index(index).get_comput_costs("cifar10-valid")["params"] == cost["params"]
    with torch.device("meta"):
        assert sum(p.numel() for p in NB201Network(space.parse(BEST_C10)).parameters()) == params


README_SCRIPT = '''
from anglenas.nb201.api import Benchmark as API
api = API.load()
num = len(api)
for i, arch_str in enumerate(api):
    if i < 3:
        print('{:5d}/{:5d} : {:}'.format(i, len(api), arch_str))
api.show(1)
info = api.query_meta_info_by_index(1)
res_metrics = info.get_metrics('cifar10', 'ori-test')
cost_metrics = info.get_comput_costs('cifar10')
arch = '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'
index = api.query_index_by_arch(arch)
api.show(index)
more = api.get_more_info(112, 'ImageNet16-120', None, '200', False)
print('RESULT', num, index, res_metrics['accuracy'], round(cost_metrics['flops'], 2), more['test-accuracy'])
print(api.query_by_arch(api.arch(112), '200'))
'''


def test_a_readme_style_user_script_runs_on_the_shipped_table(tmp_path, capsys, rows):
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(README_SCRIPT))
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    result = next(line for line in out.splitlines() if line.startswith("RESULT")).split()
    assert result[1:3] == ["15625", "1"]  # the README's example string is index 1
    assert float(result[3]) == float(rows[1]["CIFAR10TestAccuracy200Epochs"])
    assert float(result[5]) == float(rows[112]["ImageNetTestAccuracy200Epochs"])
    assert f"{float(rows[1]['CIFAR100TestAccuracy200Epochs']):.2f}%" in out
    assert rows[112]["ArchitectureString"] in out


class FakeOfficial:
    """Stands in for nats_bench / nas_201_api: records the calls it gets."""

    def __init__(self):
        self.calls = []

    def get_more_info(self, index, dataset, iepoch=None, hp="12", is_random=True):
        self.calls.append(("more", index, dataset, iepoch, hp, is_random))
        return {"train-accuracy": 99.0, "valid-accuracy": 91.0, "test-accuracy": 90.0}

    def query_meta_info_by_index(self, index, hp="12"):
        calls = self.calls

        class Results:
            def get_compute_costs(self, dataset):
                calls.append(("costs", index, dataset, hp))
                return {"flops": 1.5, "params": 0.25, "latency": 0.01}

        return Results()

    def get_net_param(self, index, dataset, seed):
        return {"seed": seed}

    def find_best(self, dataset, metric_on_set, flop_max=None, param_max=None, hp="12"):
        self.calls.append(("best", dataset, metric_on_set, flop_max, param_max, hp))
        return 42, 99.0

    def get_net_config(self, index, dataset):
        self.calls.append(("config", index, dataset))
        return {"name": "infer.tiny", "official": True}


def test_an_official_source_answers_with_official_values(api):
    official = FakeOfficial()
    bench = Benchmark(api.arch_strs[:], {d: api.accuracies(d) for d in ("cifar10", "cifar100", "ImageNet16-120")},
                      "fake.pth", official=official)
    assert bench.get_more_info(5, "cifar10-valid", iepoch=3, hp="12", is_random=777)["valid-accuracy"] == 91.0
    assert official.calls[-1] == ("more", 5, "cifar10-valid", 3, "12", 777)
    cost = bench.get_cost_info(6111, "cifar10")
    assert (cost["flops"], cost["params"], cost["latency"]) == (1.5, 0.25, 0.01)
    assert cost["counted-flops"] == pytest.approx(api.get_cost_info(6111, "cifar10")["flops"])
    assert bench.query_meta_info_by_index(6111).get_comput_costs("cifar100")["params"] == 0.25
    assert bench.get_net_param(3, "cifar10", 777) == {"seed": 777}
    assert bench.find_best("cifar100", "valid", FLOP_max=30, hp=12) == (42, 99.0)
    assert official.calls[-1] == ("best", "cifar100", "valid", 30, None, "12")
    assert bench.get_net_config(api[9], "cifar10-valid") == {"name": "infer.tiny", "official": True}
    assert official.calls[-1] == ("config", 9, "cifar10-valid")


def test_a_garbage_benchmark_file_is_named_not_a_benchmark(tmp_path):
    junk = tmp_path / "bench.pth"
    junk.write_bytes(b"this is not a benchmark\x00\x01" * 10)
    with pytest.raises(UserError, match="is not a benchmark file") as exc:
        Benchmark.load(junk)
    assert "\n" not in str(exc.value) and "pip install" not in str(exc.value)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(UserError, match="is not a benchmark file"):
        Benchmark.load(folder)


def test_the_12_epoch_table_answers_hp_12_with_valid_accuracies(tmp_path, api):
    columns = ["cifar10-test", "cifar10-val", "cifar100-test", "cifar100-val", "imagenet-test", "imagenet-val"]
    order = np.random.default_rng(0).permutation(len(api))  # rows in another order: matched by arch string
    path = tmp_path / "hp12.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["arch", "cellstr", *columns])
        for i in order:
            writer.writerow([i, api[i], *[i / 1000 + 100 * k for k in range(6)]])
    bench = Benchmark.load(hp12=path)
    assert bench.get_more_info(6111, "cifar10", hp="12") == {"test-accuracy": 6.111}
    assert bench.get_more_info(6111, "cifar10-valid", hp=12, iepoch=11) == {"valid-accuracy": 106.111}
    assert bench.get_more_info(7, "ImageNet16-120", None, True) == {"valid-accuracy": 500.007, "test-accuracy": 400.007}
    assert bench.query_meta_info_by_index(7, hp="12").get_metrics("cifar100", "x-valid")["accuracy"] == 300.007
    assert bench.get_more_info(6111, "cifar10")["test-accuracy"] == api.accuracy(6111)  # 200 epochs unchanged
    # find_best's 'valid' on CIFAR-10 is the x-valid of cifar10-valid; the highest value is the last index
    assert bench.find_best("cifar10", "valid", hp="12") == (15624, pytest.approx(115.624))
    assert bench.find_best("ImageNet16-120", "test", None, None, "12") == (15624, pytest.approx(415.624))
    assert bench.avaliable_hps == ["12", "200"]
    with pytest.raises(UserError, match="per-epoch"):
        bench.get_more_info(1, "cifar10", iepoch=5, hp="12")
    with pytest.raises(UserError, match="official benchmark file"):
        bench.get_more_info(1, "cifar10-valid", hp="12")["test-accuracy"]
    path.write_text("arch,cellstr\n0,x\n")
    with pytest.raises(UserError, match="not a 12-epoch NB201 table"):
        Benchmark.load(hp12=path)


# -- NATS-Bench's API (nats_bench.create, api_utils.NASBenchMetaAPI), behaviour as documented in its code -------
def test_create_and_the_index_calls_behave_as_nats_bench(rows, capsys):
    from anglenas.nb201 import create

    api = create(None, "tss", fast_mode=True, verbose=False)
    assert isinstance(api, Benchmark) and len(api) == 15625 and api.search_space_name == "topology"
    assert capsys.readouterr().out == ""
    strings = [r["ArchitectureString"] for r in rows]
    assert api.meta_archs == strings and api.evaluated_indexes == set(range(15625))
    assert api.archstr2index == {s: i for i, s in enumerate(strings)}
    assert api.query_index_by_arch(BEST_C10) == strings.index(BEST_C10) == 6111
    assert api.query_index_by_arch(17) == 17 and api.arch(17) == api[17] == strings[17]

    class Structure:  # NB201's genotype objects answer tostr()
        def tostr(self):
            return strings[857]

    assert api.query_index_by_arch(Structure()) == 857
    # NATS-Bench returns -1 for anything that is no architecture of the benchmark
    for junk in ("", "|x|", "|nor_conv_3x3~0|+|x", BEST_C10.replace("nor_conv_1x1", "conv_5x5"), None, 2.5,
                 (0, 1, 2), (7, 0, 0, 0, 0, 0), object()):
        assert api.query_index_by_arch(junk) == -1 and junk not in api
    with pytest.raises(UserError, match="out of range"):
        api.query_index_by_arch(15625)
    assert 6111 in api and 0 in api and BEST_C10 in api and (0,) * 6 in api
    assert 15625 not in api and -1 not in api
    assert api.get_unique_str(1) == rows[1]["UniqueString"]
    random.seed(3)
    draws = [api.random() for _ in range(50)]
    random.seed(3)
    assert draws == [random.randint(0, 15624) for _ in range(50)]
    create(None, "topology")
    assert "15625/15625 architectures" in capsys.readouterr().out
    for args, word in [((None, "sss"), "size search space"), ((None, "nas"), "invalid search space"),
                       (({"meta_archs": []}, "tss"), "pass the path")]:
        with pytest.raises(UserError, match=word):
            create(*args)


def _hand_costs(rows, classes, side):
    """Hand-counted (FLOPs, params) of every row: they depend only on the number of 1x1 and 3x3 conv edges."""
    cache, out = {}, []
    for r in rows:
        key = (r["ArchitectureString"].count("nor_conv_1x1"), r["ArchitectureString"].count("nor_conv_3x3"))
        if key not in cache:
            cache[key] = _hand_cost((space.CONV1,) * key[0] + (space.CONV3,) * key[1] + (0,) * (6 - sum(key)),
                                    classes, side)
        out.append(cache[key])
    return out


def _brute_best(rows, column, costs, flop_max=None, param_max=None):
    best = (-1, None)
    for i, (r, (flops, params)) in enumerate(zip(rows, costs)):
        if (flop_max is None or flops / 1e6 <= flop_max) and (param_max is None or params / 1e6 <= param_max):
            if best[1] is None or float(r[column]) > best[1]:
                best = (i, float(r[column]))
    return best


def test_find_best_is_a_brute_force_over_the_csv_with_hand_counted_costs(api, rows):
    c10, c100, in16 = "CIFAR10TestAccuracy200Epochs", "CIFAR100TestAccuracy200Epochs", "ImageNetTestAccuracy200Epochs"
    # the best CIFAR-10 cell is tied (6111 and 13714): NATS-Bench keeps the first
    assert api.find_best("cifar10", "test", hp="200") == (6111, float(rows[6111][c10])) == _brute_best(
        rows, c10, _hand_costs(rows, 10, 32))
    costs100 = _hand_costs(rows, 100, 32)
    best = _brute_best(rows, c100, costs100, flop_max=50)
    assert best[0] not in (-1, 9930)  # the limit changes the answer
    assert api.find_best("cifar100", "test", 50, None, "200") == best  # NB201's positional order
    assert api.find_best("cifar100", "x-test", FLOP_max=50) == best  # NB201's keyword spelling
    assert api.find_best("c100", "test", flop_max=50, enforce_all=True) == best
    costs16 = _hand_costs(rows, 120, 16)
    assert api.find_best("ImageNet16-120", "test", param_max=0.5, flop_max=20) == _brute_best(
        rows, in16, costs16, 20, 0.5)
    assert api.find_best("cifar10", "test", flop_max=1) == (-1, None)  # the smallest network has 7.8 MFLOPs
    with pytest.raises(UserError, match="official benchmark file"):
        api.find_best("cifar10", "valid")  # the x-valid of cifar10-valid
    with pytest.raises(UserError, match="hp='12'"):
        api.find_best("cifar100", "test", hp="12")


def test_get_net_config_and_the_network_it_builds(api, rows):
    from anglenas.nb201 import get_cell_based_tiny_net, network_from_config

    for dataset, classes in [("cifar10-valid", 10), ("cifar10", 10), ("cifar100", 100), ("ImageNet16-120", 120)]:
        assert api.get_net_config(6111, dataset) == {"name": "infer.tiny", "C": 16, "N": 5, "num_classes": classes,
                                                     "arch_str": rows[6111]["ArchitectureString"]}
    config = api.get_net_config(6111, "cifar100")
    with torch.device("meta"):
        net = network_from_config(config)
        assert sum(p.numel() for p in net.parameters()) == _hand_cost(space.parse(BEST_C10), 100, 32)[1]

    class Genotype:
        def tostr(self):
            return BEST_C10

    small = types.SimpleNamespace(name="infer.tiny", C=4, N=1, genotype=Genotype(), num_classes=7)
    torch.manual_seed(0)
    net = get_cell_based_tiny_net(small)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 7)
    assert sum(p.numel() for p in net.parameters()) == _hand_cost(space.parse(BEST_C10), 7, 16, c=4, n=1)[1]
    for bad, word in [({**config, "name": "infer.shape.tiny"}, "only NATS-Bench topology"),
                      ({"name": "infer.tiny", "C": 16, "arch_str": BEST_C10}, "lacks N, num_classes"),
                      ({**config, "arch_str": "|x|"}, "node")]:
        with pytest.raises(UserError, match=word):
            network_from_config(bad)


def test_query_info_str_by_arch_holds_the_table_and_the_hand_counted_costs(api, rows, capsys):
    text = api.query_info_str_by_arch(BEST_C10, "200")
    lines = text.splitlines()
    assert lines[0] == BEST_C10 and lines[1] == \
        "datasets : ['cifar10', 'cifar100', 'ImageNet16-120'], extra-info : arch-index=6111"
    for dataset, (classes, side), column in [("cifar10", (10, 32), "CIFAR10TestAccuracy200Epochs"),
                                             ("ImageNet16-120", (120, 16), "ImageNetTestAccuracy200Epochs")]:
        flops, params = _hand_cost(space.parse(BEST_C10), classes, side)
        assert f"{dataset:14s} FLOP={flops / 1e6:6.2f} M, Params={params / 1e6:.3f} MB" in text
        assert f"{dataset:14s} test : [top1 = {float(rows[6111][column]):.2f}%]" in text
    assert api.query_by_arch(6111, "200") == text
    api.show(6111)
    assert capsys.readouterr().out == text + "\n"
    with pytest.raises(UserError, match="hp='12'"):
        api.query_info_str_by_arch(6111, "12")


NATS_SCRIPT = '''
from anglenas.nb201 import create, get_cell_based_tiny_net  # was: from nats_bench import create, xautodl.models
api = create(None, 'tss', fast_mode=True, verbose=False)
info = api.get_more_info(1234, 'cifar10', hp='200', is_random=False)
cost = api.get_cost_info(12, 'cifar10')
config = api.get_net_config(12, 'cifar10')
network = get_cell_based_tiny_net(config)
index = api.query_index_by_arch('|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+'
                                '|skip_connect~0|nor_conv_3x3~1|skip_connect~2|')
best, accuracy = api.find_best('cifar100', 'test', 20, None, hp='200')
print('RESULT', info['test-accuracy'], index, best, accuracy, sum(p.numel() for p in network.parameters()),
      round(cost['params'] * 1e6))
'''


def test_a_nats_bench_user_script_runs_with_one_changed_import(tmp_path, capsys, rows):
    script = tmp_path / "nats_user.py"
    script.write_text(textwrap.dedent(NATS_SCRIPT))
    runpy.run_path(str(script), run_name="__main__")
    result = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("RESULT")).split()
    assert float(result[1]) == float(rows[1234]["CIFAR10TestAccuracy200Epochs"]) and result[2] == "1"
    assert (int(result[3]), float(result[4])) == _brute_best(rows, "CIFAR100TestAccuracy200Epochs",
                                                             _hand_costs(rows, 100, 32), 20)
    params = _hand_cost(space.parse(rows[12]["ArchitectureString"]), 10, 32)[1]
    assert int(result[5]) == int(result[6]) == params


def test_query_entry_point_takes_its_config_from_the_package(rows):
    from anglenas.nb201.query import QueryConfig, query_report

    entry = runpy.run_path(str(TABLE.parents[2] / "nas-bench-201" / "query.py"))
    assert entry["QueryConfig"] is QueryConfig  # defined in the package, not in the entry point
    report = query_report(QueryConfig(arch=rows[857]["ArchitectureString"])).splitlines()
    assert report[0] == f"index 857  {rows[857]['ArchitectureString']}"
    assert report[3] == f" ImageNet16-120: {float(rows[857]['ImageNetTestAccuracy200Epochs']):.2f}%"
    assert query_report(QueryConfig(index=857)).splitlines() == report
    for cfg, word in [(QueryConfig(), "exactly one"), (QueryConfig(arch="|x|", index=1), "exactly one"),
                      (QueryConfig(arch="|x|"), "node"), (QueryConfig(index=15625), "out of range")]:
        with pytest.raises(UserError, match=word):
            query_report(cfg)
