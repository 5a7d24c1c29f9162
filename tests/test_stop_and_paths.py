"""Work is not lost: Ctrl-C / SIGTERM checkpoint after a whole step and say so, unwritable outputs fail before any
work, evaluation needs no training data and refuses an --arch that contradicts the checkpoint."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from anglenas.checkpoint import load_checkpoint
from anglenas.config import parse_config
from anglenas.data import DataConfig, build_data
from anglenas.errors import UserError
from anglenas.spaces import get_space
from anglenas.train.stop import Stopped, StopRequest
from anglenas.train.supernet import SupernetTrainConfig, SupernetTrainer

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "training" / "train_from_scratch.py"
SHRINK = ROOT / "shrinking" / "main.py"


def test_a_stop_request_checkpoints_the_finished_step(tmp_path):
    space = get_space("gpu").scaled(0.25, 32, 10, 1)
    data = build_data(DataConfig(dataset="embedded"), "cpu")
    stream = data.train_stream(32, seed=0)
    ops = [site[:1] for site in space.initial_operations()]

    class StopAtThree:
        def paths(self, step):
            if step == 3:
                StopRequest.requested = True  # what SIGINT / SIGTERM do
            return [[site[0] for site in ops]]

    written = []
    trainer = SupernetTrainer(space.supernet(), StopAtThree(), stream, SupernetTrainConfig(checkpoint_minutes=0),
                              10, torch.device("cpu"))
    with pytest.raises(Stopped, match="stopped after step 4; a checkpoint of that step was written"):
        trainer.train(0, 10, checkpoint=written.append, checkpoint_every=100)
    assert written == [4]  # after the whole step 3, not in the middle of it
    assert not StopRequest.requested  # the handlers are gone with the loop


@pytest.mark.slow
def test_sigterm_during_training_from_scratch_keeps_a_checkpoint_and_resumes(tmp_path):
    save = tmp_path / "run"
    cmd = [sys.executable, str(TRAIN), "--demo", "--arch", "SPOS_ABS", "--epochs", "1", "--eval_every", "1000",
           "--eval_limit", "50", "--checkpoint_minutes", "0", "--save", str(save)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    log = save / "log.txt"
    while time.time() < deadline and not log.exists() or "training " not in log.read_text():
        time.sleep(0.2)
    time.sleep(1)  # a few iterations in
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped at iteration" in err and "checkpoint.pt holds that iteration" in err
    step = load_checkpoint(save / "checkpoint.pt")["step"]
    assert step > 0
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"resumed from {save / 'checkpoint.pt'} at iteration {step}" in done.stdout


@pytest.mark.parametrize("flags,message", [
    (["--save", "{file}/run"], "cannot write the run folder"),
    (["--save", "{tmp}/ok", "--operations_path", "{file}/ops.json"], "cannot write the operations file"),
    (["--save", "{tmp}/ok", "--operations_path", "{tmp}"], "is a folder"),
])
def test_unwritable_outputs_fail_before_any_work(tmp_path, flags, message):
    (tmp_path / "a-file").write_text("not a folder")
    flags = [f.format(file=tmp_path / "a-file", tmp=tmp_path) for f in flags]
    t0 = time.time()
    out = subprocess.run([sys.executable, str(SHRINK), "--demo", *flags], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and time.time() - t0 < 60


def test_evaluation_needs_only_the_test_folder_and_refuses_another_arch(tmp_path):
    from anglenas.stages.train import DEMO, FinalTrainConfig, FinalTrainer

    cfg = parse_config(FinalTrainConfig, ["--demo", "--arch", "FAIRNAS_ABS", "--epochs", "0.1", "--eval_limit", "20",
                                          "--save", str(tmp_path / "t")], presets={"demo": DEMO})
    FinalTrainer(cfg).run()
    ckpt = str(tmp_path / "t" / "checkpoint.pt")
    evaluate = ["--demo", "--eval", "--eval-resume", ckpt, "--eval_limit", "20"]
    result = FinalTrainer(parse_config(FinalTrainConfig, evaluate, presets={"demo": DEMO})).evaluate_checkpoint()
    assert 0 <= result["top1"] <= 100
    same = parse_config(FinalTrainConfig, evaluate + ["--arch", "fairnas_abs"], presets={"demo": DEMO})
    assert FinalTrainer(same).arch == get_space("fairnas").published["FAIRNAS_ABS"]
    with pytest.raises(UserError, match="is not the architecture .* was trained with"):
        FinalTrainer(parse_config(FinalTrainConfig, evaluate + ["--arch", "PROXYLESS_ABS"],
                                  presets={"demo": DEMO}))


def test_imagenet_evaluation_builds_from_the_test_folder_alone(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        Image.new("RGB", (40, 30), (10, 20, 30)).save(tmp_path / "val" / cls / "x.jpg")
    data = build_data(DataConfig(dataset="imagenet", test_dir=str(tmp_path / "val"), workers=0), "cpu",
                      held_out=False, train=False)
    assert data.num_classes == 2 and data.num_val == 2
    with pytest.raises(UserError, match="needs --test_dir"):
        build_data(DataConfig(dataset="imagenet", workers=0), "cpu", held_out=False, train=False)
