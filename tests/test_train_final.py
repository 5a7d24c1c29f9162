"""Training from scratch: resume after an interruption, eval of saved checkpoints, EMA, schedule, CLI errors."""
import dataclasses
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anglenas.errors import UserError
from anglenas.spaces import get_space
from anglenas.stages.train import BEST, CHECKPOINT, SUMMARY, FinalTrainConfig, FinalTrainer
from anglenas.train.ema import WeightEma

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ROOT / "training" / "train_from_scratch.py"
SPOS_STR = "2 2 -1 0 0 -1 -1 0 5 -1 4 4 0 0 4 2 3 4 4 4 3"


def tiny_config(save: Path, **overrides) -> FinalTrainConfig:
    """A width-0.25 SPOS_ABS on the embedded 32x32 data: 6 iterations of batch 16, evaluation on 48 images."""
    cfg = FinalTrainConfig(arch=SPOS_STR, dataset="embedded", width_mult=0.25, stem_stride=1, batch_size=16,
                           lr=0.05, total_iters=6, eval_every=3, checkpoint_every=2, eval_limit=48,
                           eval_batch_size=24, ema_decay=0.9, workers=0, device="cpu", save=str(save))
    return dataclasses.replace(cfg, **overrides)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    save = tmp_path_factory.mktemp("uninterrupted")
    summary = FinalTrainer(tiny_config(save)).run()
    return save, summary


def _states(save: Path) -> dict:
    return torch.load(save / CHECKPOINT, weights_only=True)


def test_summary_contents(finished_run):
    save, summary = finished_run
    on_disk = json.loads((save / SUMMARY).read_text())
    assert on_disk == summary
    assert summary["num_classes"] == 10 and summary["space"] == "gpu" and summary["arch_str"] == SPOS_STR
    assert summary["iterations"] == 6 and summary["eval_images"] == 48
    assert [h["step"] for h in summary["history"]] == [3, 6]
    assert summary["best_top1"] == max(h["top1"] for h in summary["history"])
    assert 0 < summary["flops_m"] < summary["reference_flops_m"] == 472.52
    # top-1 over 48 images is a multiple of 100/48
    assert summary["top1"] * 48 / 100 == pytest.approx(round(summary["top1"] * 48 / 100), abs=1e-3)


def test_lr_is_linear_to_zero(finished_run):
    save, _ = finished_run
    # iteration t uses 0.05 * (1 - t / 6); the optimizer holds the LR of the last iteration, t = 5
    assert _states(save)["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.05 / 6)


@pytest.mark.slow
def test_resume_after_interruption_gives_the_same_weights(finished_run, tmp_path):
    reference, _ = finished_run
    cfg = tiny_config(tmp_path)
    assert FinalTrainer(cfg).run(max_steps=5) is None  # "killed" after iteration 5; last checkpoint at 4
    assert _states(tmp_path)["step"] == 4
    summary = FinalTrainer(cfg).run()  # a new process would do exactly this: same arguments, same folder
    a, b = _states(reference), _states(tmp_path)
    assert a["step"] == b["step"] == 6
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for name in a["ema"]["module"]:
        assert torch.equal(a["ema"]["module"][name], b["ema"]["module"][name]), name
    assert summary["history"] == json.loads((reference / SUMMARY).read_text())["history"]


def test_resume_with_other_settings_is_refused(finished_run):
    save, _ = finished_run
    with pytest.raises(UserError, match=r"other settings \(lr: 0.05 -> 0.1\)"):
        FinalTrainer(tiny_config(save, lr=0.1)).run()


def test_eval_reproduces_the_logged_accuracy(finished_run):
    save, summary = finished_run
    for name, key in ((CHECKPOINT, "top1"), (BEST, "best_top1")):
        cfg = FinalTrainConfig(eval=True, eval_resume=str(save / name), eval_limit=48, device="cpu", workers=0)
        result = FinalTrainer(cfg).evaluate_checkpoint()  # network and dataset come from the checkpoint
        assert round(result["top1"], 4) == summary[key]
    # the command line, given only the checkpoint
    out = subprocess.run([sys.executable, str(ENTRY), "--eval", "--eval-resume", str(save / CHECKPOINT),
                          "--eval_limit", "48", "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"top-1 {summary['top1']:.2f}"


def test_epochs_override_iterations(tmp_path):
    trainer = FinalTrainer(tiny_config(tmp_path, epochs=2.0, total_iters=123))
    trainer._setup_training()
    assert trainer.total == 2 * (2000 // 16)  # the embedded set holds 2,000 training images


def test_defaults_are_the_papers_recipe():
    cfg = FinalTrainConfig()
    assert (cfg.total_iters, cfg.batch_size, cfg.lr, cfg.min_lr, cfg.momentum) == (300000, 1024, 0.5, 0.0, 0.9)
    assert (cfg.weight_decay, cfg.label_smoothing, cfg.grad_clip, cfg.dropout) == (4e-5, 0.1, 5.0, None)
    assert get_space("gpu").default_dropout == 0.2  # None: the space's dropout
    assert cfg.ema_decay == 0.0 and cfg.dataset == "imagenet"


def test_ema_follows_the_formula():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.constant_(model.weight, 1.0)
    ema = WeightEma(model, decay=0.5)
    expected = 1.0
    for t, value in enumerate([3.0, -1.0, 2.0]):
        torch.nn.init.constant_(model.weight, value)
        ema.update(model)
        d = min(0.5, (1 + t) / (10 + t))  # 0.1, 2/11, 0.25
        expected = d * expected + (1 - d) * value
    assert ema.module.weight[0, 0].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("args,message", [
    (["--arch", "2 2 -1 0 0"], "no search space has 5 layers"),
    (["--arch", SPOS_STR.replace("5", "9", 1)], "layer 8: op index 9 is out of range"),
    (["--arch", "-1" + SPOS_STR[1:]], "layer 0: identity (-1) is not allowed here"),
    (["--eval", "--eval-resume", "does/not/exist.pt"], "checkpoint does/not/exist.pt does not exist"),
])
def test_bad_inputs_give_one_error_line(args, message, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(ENTRY), "--demo", "--device", "cpu", "--save", str(tmp_path / "r"), *args])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(ENTRY), run_name="__main__")
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_bad_input_in_a_fresh_process_has_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, str(ENTRY), "--arch", "2 2 -1"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == "" and len(out.stderr.splitlines()) == 1
    assert out.stderr.startswith("error: no search space has 3 layers or edges; known spaces: ")
    assert "gpu (21 layers)" in out.stderr and "fairnas (19 layers)" in out.stderr
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.slow
def test_two_gloo_ranks_under_torchrun(tmp_path):
    """DDP on the CPU: both ranks finish (no deadlock at the final evaluation), rank 0 writes the summary, and the
    checkpoint it saved evaluates to the summary's top-1."""
    flags = ["--arch", SPOS_STR, "--dataset", "embedded", "--width_mult", "0.25", "--stem_stride", "1",
             "--batch_size", "16", "--lr", "0.05", "--total_iters", "4", "--eval_every", "2",
             "--checkpoint_every", "2", "--eval_limit", "48", "--eval_batch_size", "24", "--workers", "0",
             "--device", "cpu", "--save", str(tmp_path)]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(ENTRY), *flags],
                         capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / SUMMARY).read_text())
    ev = subprocess.run([sys.executable, str(ENTRY), "--eval", "--eval-resume", str(tmp_path / CHECKPOINT),
                         "--eval_limit", "48"],
                        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert ev.stdout.strip().splitlines()[-1] == f"top-1 {summary['top1']:.2f}"


def test_darts_demo_names_the_paper_size_network(tmp_path):
    """``--darts --demo`` trains a width-0.25 net at 32 px, but its "paper size" is the paper's C=45 ImageNet network:
    PDARTS_ABS 570.1M FLOPs (Table 3 of the ABS paper / the issue's audit), 5.18M params without the auxiliary head."""
    from anglenas.config import parse_config

    cfg = parse_config(FinalTrainConfig, ["--darts", "--demo", "--arch", "PDARTS_ABS", "--total_iters", "0",
                                          "--epochs", "0.001", "--eval_limit", "16", "--save", str(tmp_path / "r")],
                       presets=FinalTrainConfig.presets)
    trainer = FinalTrainer(cfg)
    described = trainer._describe()
    assert (described["reference_flops_m"], described["reference_params_m"]) == (570.10, 5.175)
    assert described["flops_m"] < 100 and described["params_m"] < 0.5  # the demo trains the small one
