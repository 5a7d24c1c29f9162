"""The NB201 comparison of every searcher (nas-bench-201/compare_searchers.py --demo): every recorded cell's ground
truth, rank and space against the benchmark table read directly from its CSV."""
import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "anglenas" / "nb201" / "nats_bench.csv"


def entry():
    spec = importlib.util.spec_from_file_location("compare_searchers", ROOT / "nas-bench-201" / "compare_searchers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    save = tmp_path_factory.mktemp("compare")
    entry()(["--demo", "--threads", "1", "--save", str(save)])
    return save, json.loads((save / "compare.json").read_text())


def table_rows() -> dict[str, dict[str, float]]:
    with open(TABLE) as fh:
        rows = list(csv.DictReader(fh))
    return {r["ArchitectureString"]: {"cifar10": float(r["CIFAR10TestAccuracy200Epochs"]),
                                      "cifar100": float(r["CIFAR100TestAccuracy200Epochs"]),
                                      "ImageNet16-120": float(r["ImageNetTestAccuracy200Epochs"])} for r in rows}


OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def cell_ops(arch: str) -> list[int]:
    """The op id of each edge 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2 of an arch string."""
    return [OPS.index(item.split("~")[0]) for node in arch.split("+") for item in node.strip("|").split("|")]


def test_demo_records_every_cell_with_its_ground_truth(demo):
    save, doc = demo
    rows = table_rows()
    c10 = np.array([r["cifar10"] for r in rows.values()])
    labels = {(r["searcher"], r["space"]) for r in doc["runs"]}
    assert labels == {(s, sp) for s in ("spos", "darts") for sp in ("full", "abs-1")}
    for run in doc["runs"]:
        assert run["gt"] == rows[run["arch"]]  # the benchmark's own numbers for the recorded cell
        assert run["rank"] == 1 + int((c10 > rows[run["arch"]]["cifar10"]).sum())
        assert run["wall_seconds"] > 0 and Path(run["result"]).is_file()
        space = next(s for s in doc["spaces"] if s["space"] == run["space"] and s["seed"] == run["seed"])
        assert run["obeyed"] == all(op in site for op, site in zip(cell_ops(run["arch"]), space["ops"]))
        assert run["obeyed"]
    assert round(doc["optimum"]["gt"]["cifar10"], 2) == 94.37 and doc["optimum"]["index"] == 6111  # NB201: 94.37


def test_baselines_are_those_of_the_cells_each_space_holds(demo):
    save, doc = demo
    rows = table_rows()
    for space in doc["spaces"]:
        inside = [gt for arch, gt in rows.items()
                  if all(op in site for op, site in zip(cell_ops(arch), space["ops"]))]
        assert space["size"] == len(inside)
        assert space["best"]["cifar10"] == max(gt["cifar10"] for gt in inside)
        assert space["random"]["cifar10"] == pytest.approx(np.mean([gt["cifar10"] for gt in inside]))
    full = next(s for s in doc["spaces"] if s["space"] == "full")
    abs_space = next(s for s in doc["spaces"] if s["space"] == "abs-1")
    assert full["size"] == 15625 and sum(len(site) for site in abs_space["ops"]) == 30 - 20  # ABS dropped 20 of 30
    assert (save / "compare.md").read_text().startswith("| searcher | full space | ABS (100% budget)")
    assert (save / "compare.png").stat().st_size > 0


def test_a_killed_table_resumes_without_rerunning_finished_runs(demo, tmp_path):
    save, doc = demo
    result = Path(doc["runs"][0]["result"])
    before = result.stat().st_mtime_ns
    entry()(["--demo", "--threads", "1", "--save", str(save)])  # every run is finished: nothing runs again
    assert result.stat().st_mtime_ns == before
    again = json.loads((save / "compare.json").read_text())
    assert again["runs"] == doc["runs"]


def test_the_report_names_the_operators_two_budgets_share():
    """Counted by hand: the 25% shrink keeps 10 operators; 5 of them (edge 0 conv3, edges 1, 3, 4 skip, edge 5 none)
    are among the full budget's."""
    from anglenas.nb201.compare_report import markdown, shared_operators

    full = [[3], [1, 3], [1], [1, 3], [1, 3], [0, 3]]
    quarter = [[0, 3], [0, 1], [0], [0, 1], [0, 1], [0]]
    gt = {"cifar10": 90.0}
    spaces = [{"seed": 0, "space": "full", "size": 15625, "ops": [[0, 1, 2, 3, 4]] * 6, "best": gt, "random": gt},
              {"seed": 0, "space": "abs-1", "size": 16, "ops": full, "best": gt, "random": gt},
              {"seed": 0, "space": "abs-0.25", "size": 16, "ops": quarter, "best": gt, "random": gt}]
    shared = shared_operators(spaces)
    assert shared == [{"seed": 0, "space": "abs-0.25", "kept": 10, "in_common": 5}]
    runs = [{"searcher": "spos", "space": s, "gt": gt, "wall_seconds": 1.0} for s in ("full", "abs-1", "abs-0.25")]
    text = markdown({"runs": runs, "spaces": spaces, "shared_operators": shared,
                     "optimum": {"index": 6111, "gt": {"cifar10": 94.37}}})
    assert "Cells left per seed: full space 15625; ABS (100% budget) 16; ABS (25% budget) 16." in text
    assert "ABS (25% budget) shrink keeps in common with the full budget's, per seed: 5 of 10." in text
