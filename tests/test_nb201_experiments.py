"""NB201 experiments 1-5 end to end on a tiny supernet and the embedded mini CIFAR-10."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from anglenas.nb201.api import TABLE

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--demo", "--channels", "4", "--cells_per_stage", "1", "--epochs", "2", "--eval_epochs", "1,2",
        "--batch_size", "128", "--acc_archs", "6", "--rebn_images", "64", "--eval_images", "64",
        "--eval_batch_size", "64"]


def script(name, save, *extra):
    out = subprocess.run([sys.executable, str(ROOT / "nas-bench-201" / name), *TINY, "--save", str(save), *extra],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    save = tmp_path_factory.mktemp("nb201") / "run"
    script("angle_tau.py", save)
    return save


def gt_c10():
    with open(TABLE, newline="") as fh:
        return np.array([float(r["CIFAR10TestAccuracy200Epochs"]) for r in csv.DictReader(fh)])


def test_tau_table_matches_scipy_on_the_saved_scores(run):
    tau = json.loads((run / "tau.json").read_text())
    assert set(tau) == {"angle", "magnitude", "random", "acc_rebn", "acc_no_rebn", "angle_acc_subset"}
    assert all(-1 <= v <= 1 for v in tau.values())
    scores = np.load(run / "seed-0" / "scores.npz")
    assert scores["angle"].shape == (15625,) and len(scores["acc_subset"]) == 6
    gt = gt_c10()
    assert tau["angle"] == pytest.approx(scipy.stats.kendalltau(scores["angle"], gt).statistic, abs=1e-12)
    sub = scores["acc_subset"]
    assert tau["acc_rebn"] == pytest.approx(scipy.stats.kendalltau(scores["acc_rebn"], gt[sub]).statistic, abs=1e-12)
    table = json.loads((run / "tau_table.json").read_text())
    assert set(table["per_epoch"]["angle"]) == {"1", "2"} and table["seeds"] == [0]
    for name in ("tau_per_epoch.png", "angle_vs_accuracy.png", "tau.md", "seed-0/weights-epoch-0.pt",
                 "seed-0/weights-epoch-1.pt", "seed-0/weights-epoch-2.pt"):
        assert (run / name).is_file(), name


@pytest.mark.slow
def test_drop_and_search_reuse_the_supernet(run):
    out = script("drop_ops.py", run)
    assert "resumed after epoch 2" in out.stdout and "supernet 1/" not in out.stdout
    drop = json.loads((run / "drop.json").read_text())
    ranks = drop["gt_operator_ranks"]
    assert sorted(ranks.values()) == list(range(1, 31))
    # hand check: edge 0's operators by the mean CIFAR-10 accuracy of the cells containing them
    from anglenas.nb201.api import Benchmark
    bench = Benchmark.load()
    means = [gt_c10()[bench.cells[:, 0] == op].mean() for op in range(5)]
    names = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert ranks[f"0,{names[int(np.argmax(means))]}"] == min(ranks[f"0,{op}"] for op in names)
    assert set(drop["metrics"]) == {"angle", "acc_no_rebn", "magnitude", "weight_norm"}
    for metric, recs in drop["metrics"].items():
        kept = recs[0]["kept"]
        assert sum(map(len, kept)) == 10 and all(kept), metric
        assert recs[0]["top10_kept"] == sum(r <= 10 for r in recs[0]["kept_gt_ranks"])
        assert set(recs[0]["scores"]) == set(ranks), metric
    # "magnitude" is the original's: softmax of the DARTS alpha trained in seed-0/alpha, all 30 operators
    import torch
    ckpt = torch.load(run / "seed-0" / "alpha" / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and ckpt["alpha"]["alphas"].shape == (6, 5)
    probs = torch.softmax(ckpt["alpha"]["alphas"].double(), dim=-1)
    ops = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    alpha = drop["metrics"]["magnitude"][0]["scores"]
    assert len(alpha) == 30
    assert all(alpha[f"{e},{ops[o]}"] == pytest.approx(float(probs[e, o]), abs=1e-12)
               for e in range(6) for o in range(5))
    assert not torch.allclose(probs, torch.full((6, 5), 0.2, dtype=torch.float64))  # alpha was trained
    again = script("drop_ops.py", run)
    assert "seed 0 alpha: resumed after epoch 2" in again.stdout and "DARTS alpha 1/" not in again.stdout
    assert json.loads((run / "drop.json").read_text())["metrics"] == drop["metrics"]
    out = script("search.py", run, "--population_num", "4", "--select_num", "2", "--crossover_num", "2",
                 "--mutation_num", "2", "--max_epochs", "2")
    result = json.loads((run / "search.json").read_text())["runs"][0]
    for name in ("full", "abs"):
        found = result[name]
        assert found["gt_accuracy"]["cifar10"] == pytest.approx(gt_c10()[found["index"]])
        assert found["gt_accuracy"]["cifar10"] <= found["space_best_gt"]
    assert result["full"]["space_size"] == 15625 and result["abs"]["ops"] == drop["metrics"]["angle"][0]["kept"]


def test_bad_input_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "nas-bench-201" / "angle_tau.py"), "--demo", "--eval_epochs",
                          "0,x", "--save", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr


@pytest.mark.slow
def test_stopped_and_extended_run_equals_uninterrupted(run, tmp_path):
    """1 epoch, then the same command with --epochs 2 (same LR horizon) resumes to the uninterrupted weights."""
    import torch
    half = tmp_path / "half"
    script("angle_tau.py", half, "--epochs", "1", "--eval_epochs", "1", "--lr_horizon_epochs", "2",
           "--acc_archs", "0")
    other = subprocess.run([sys.executable, str(ROOT / "nas-bench-201" / "angle_tau.py"), *TINY, "--epochs", "3",
                            "--save", str(half)], capture_output=True, text=True, cwd=ROOT)
    assert other.returncode == 2 and "lr_horizon_epochs" in other.stderr and "Traceback" not in other.stderr
    out = script("angle_tau.py", half)  # --epochs 2: horizon 2 as before
    assert "resumed after epoch 1" in out.stdout
    a = torch.load(half / "seed-0" / "weights-epoch-2.pt")
    b = torch.load(run / "seed-0" / "weights-epoch-2.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((half / "tau.json").read_text()) == json.loads((run / "tau.json").read_text())


def test_figure_script_redraws_from_a_run(run, tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "figure" / "nb201_figures.py"), "--run", str(run),
                          "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "tau_per_epoch.png").stat().st_size > 1000
    assert (tmp_path / "angle_vs_accuracy.png").stat().st_size > 1000


def test_cpu_preset_and_default_semantics():
    from anglenas.config import parse_config
    from anglenas.nb201.settings import NB201Config

    default = parse_config(NB201Config, [])
    assert default.optimizer_semantics == "original" and default.preset is None
    cpu = parse_config(NB201Config, ["--preset", "cpu", "--epochs", "2", "--eval_epochs", "1,2"])
    assert (cpu.channels, cpu.cells_per_stage, cpu.resolution, cpu.batch_size, cpu.threads) == (16, 2, 32, 128, 2)
    assert cpu.dataset == "cifar10-jpg" and cpu.optimizer_semantics == "sampled_only" and cpu.epochs == 2


def test_checkpoint_from_before_the_semantics_flag_is_not_resumed_as_original(run, tmp_path):
    """A checkpoint without optimizer_semantics was trained sampled_only: resuming it with the new default refuses."""
    import shutil

    import torch
    old = tmp_path / "old"
    shutil.copytree(run / "seed-0", old / "seed-0")
    ckpt = torch.load(old / "seed-0" / "checkpoint.pt")
    del ckpt["config"]["optimizer_semantics"]
    torch.save(ckpt, old / "seed-0" / "checkpoint.pt")
    out = subprocess.run([sys.executable, str(ROOT / "nas-bench-201" / "angle_tau.py"), *TINY, "--save", str(old)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2 and "optimizer_semantics" in out.stderr and "Traceback" not in out.stderr
