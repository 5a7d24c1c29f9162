"""The shrinking stage end to end: a tiny run, kill-and-resume, two gloo ranks, and bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from anglenas.operations import load_operations

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "shrinking" / "main.py"
# 100 training images -> 1 step per epoch at batch 64; 2 rounds (6.9e16 -> 2e16 < 3e16)
TINY = ["--demo", "--search_val_size", "1900", "--first_stage_epochs", "3", "--other_stage_epochs", "2",
        "--sample_num", "5", "--stop_threshold", "3e16", "--checkpoint_every", "1"]


def shrink(save, *extra, timeout=300):
    return subprocess.run([sys.executable, str(MAIN), *TINY, "--save", str(save), *extra],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    save = tmp_path_factory.mktemp("shrink") / "run"
    out = shrink(save)
    assert out.returncode == 0, out.stderr
    return save


def test_tiny_run_writes_every_output(uninterrupted):
    ops = load_operations(uninterrupted / "operations.json")
    assert ops.space.name == "gpu" and 1 < ops.size <= 3e16
    assert ops.num_operators == 141 - 2 * 7  # two rounds of seven global drops
    history = json.loads((uninterrupted / "scores.json").read_text())
    assert [r["round"] for r in history] == [0, 1] and len(history[0]["dropped"]) == 7
    assert (uninterrupted / "angle_scores.png").stat().st_size > 10_000
    assert list((uninterrupted / "tb").glob("events.out.tfevents.*"))
    assert "round 1" in (uninterrupted / "log.txt").read_text()


def test_run_again_is_a_no_op_resume(uninterrupted):
    before = (uninterrupted / "operations.json").read_text()
    out = shrink(uninterrupted)
    assert out.returncode == 0 and "resumed from" in out.stdout
    assert (uninterrupted / "operations.json").read_text() == before


@pytest.mark.slow
def test_killed_twice_ends_like_an_uninterrupted_run(tmp_path, uninterrupted):
    save = tmp_path / "run"

    def start_and_kill(when):
        proc = subprocess.Popen([sys.executable, str(MAIN), *TINY, "--save", str(save)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and not when():
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    log = save / "log.txt"
    start_and_kill(lambda: (save / "checkpoint.pt").exists())  # mid first stage
    start_and_kill(lambda: log.exists() and "round 0:" in log.read_text())  # after a round
    out = shrink(save)
    assert out.returncode == 0, out.stderr
    assert (save / "operations.json").read_text() == (uninterrupted / "operations.json").read_text()
    a = torch.load(save / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(uninterrupted / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_resume_with_other_settings_is_refused(uninterrupted):
    out = shrink(uninterrupted, "--sample_num", "6")
    assert out.returncode == 2 and "holds a run with other settings (sample_num: 5 -> 6)" in out.stderr


@pytest.mark.slow
def test_two_gloo_ranks_train_identical_weights():
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          str(ROOT / "tests" / "dist_check.py")], capture_output=True, text=True, timeout=300,
                         cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("identical weights on 2 ranks") == 2


@pytest.mark.slow
def test_shrinking_under_torchrun(tmp_path):
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(MAIN), *TINY,
                          "--save", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert load_operations(tmp_path / "operations.json").num_operators == 141 - 14


@pytest.mark.parametrize("args,message", [
    (["--space", "mnasnet"], "unknown search space 'mnasnet'; choose one of: darts, fairnas, gpu"),
    (["--max_flops", "1e6"], "no architecture of this space meets the FLOPs limits"),
    (["--dataset", "imagenet", "--train_dir", "/nonexistent/imagenet/train"], "image folder /nonexistent"),
    (["--dataset", "cifar10"], "needs --data_dir"),
    (["--batch_size", "4096"], "fewer than one global batch"),
    (["--first_stage_epochs", "two"], "first_stage_epochs must be of type int"),
])
def test_bad_input_gives_one_clear_line(tmp_path, args, message):
    out = subprocess.run([sys.executable, str(MAIN), "--demo", "--save", str(tmp_path / "x"), *args],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode != 0
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_empty_dataset_folder(tmp_path):
    (tmp_path / "train").mkdir()
    out = subprocess.run([sys.executable, str(MAIN), "--dataset", "imagenet", "--train_dir", str(tmp_path / "train"),
                          "--save", str(tmp_path / "x")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and "holds no images" in out.stderr and out.stderr.count("\n") == 1


def test_bad_yaml_key(tmp_path):
    (tmp_path / "c.yaml").write_text("sample_num: 10\nsampl_num: 3\n")
    out = subprocess.run([sys.executable, str(MAIN), "--config", str(tmp_path / "c.yaml")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and "unknown key(s) ['sampl_num']" in out.stderr
