"""bench/gpu_check.py: the tiny CPU run reports every section, and its parts compute what they claim."""
import importlib.util
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from anglenas.abs.angle import ArchAngles, snapshot
from anglenas.checkpoint import save_checkpoint
from anglenas.spaces import get_space
from anglenas.train.fast import fused_sgd

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))  # what running `python bench/NAME.py` does: bench scripts import bench/common.py


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gpu_check = load("gpu_check")
TITLES = ["1. CUDA smoke of every stage", "2. Supernet training img/s", "3. One ABS round",
          "4. Final training and data loading img/s", "5. NB201 tau with the rest of the budget"]


def numbers(section: dict) -> list[float]:
    """Every measured number of a section (its tables and figures)."""
    found = []
    for table in section["tables"].values():
        for row in table.values():
            found += [v for v in (row.values() if isinstance(row, dict) else [row])
                      if isinstance(v, (int, float)) and not isinstance(v, bool)]
    found += [v for v in section["figures"].values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return found


def test_tiny_cpu_run_reports_every_section_with_numbers_or_a_reason(tmp_path):
    t0 = time.monotonic()
    report = gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--tiny"])
    elapsed = time.monotonic() - t0
    on_disk = json.loads((tmp_path / "gpu_check.json").read_text())
    # budget 85 s; a long C call can overrun a cap by a few seconds
    assert elapsed < 118, {k: (s["status"], s["seconds"]) for k, s in on_disk["sections"].items()}
    assert on_disk["sections"].keys() == report["sections"].keys()
    assert [s["title"] for s in on_disk["sections"].values()] == TITLES
    assert on_disk["device"].startswith("CPU") and on_disk["torch"] == torch.__version__
    md = (tmp_path / "gpu_check.md").read_text()
    assert "device: **CPU" in md and f"torch {torch.__version__}" in md
    for section in on_disk["sections"].values():
        status = section["status"]
        assert status == "ok" or re.match(r"(failed|skipped): \S", status), status
        assert numbers(section) or status != "ok", section
        assert f"## {section['title']}" in md and status in md
    assert any(numbers(s) for s in on_disk["sections"].values())


def test_nested_time_caps_stop_the_right_block():
    caps = gpu_check.Caps()
    t0 = time.monotonic()
    with pytest.raises(gpu_check.TimeCap) as outer_hit:
        with caps.cap(0.6, "outer") as outer:
            with pytest.raises(gpu_check.TimeCap) as inner_hit:
                with caps.cap(0.2, "inner") as inner:
                    while True:
                        time.sleep(0.01)
            assert inner_hit.value.args[1] is inner and 0.15 < time.monotonic() - t0 < 0.5
            with caps.cap(5.0, "long inner"):  # the outer cap still stops a longer inner block
                while True:
                    time.sleep(0.01)
    assert outer_hit.value.args[1] is outer and 0.55 < time.monotonic() - t0 < 1.5
    assert caps.stack == []


def test_flags_missing_from_help_are_dropped_with_their_values():
    argv = ["--a", "1", "--b", "--c", "x", "--d", "2"]
    assert gpu_check.drop_flags(argv, ["--a", "--b"]) == ["--c", "x", "--d", "2"]
    assert gpu_check.drop_flags(argv, ["--c"]) == ["--a", "1", "--b", "--d", "2"]


def test_epoch_taus_come_from_the_runs_checkpoints(tmp_path):
    record = {"epoch": 3, "angle_seconds": 0.25, "tau": {"angle": {"cifar10": 0.5, "cifar100": 0.1},
                                                         "magnitude": {"cifar10": -0.125}}}
    later = {"epoch": 3, "angle_seconds": 9.0, "tau": {"angle": {"cifar10": 0.9}, "magnitude": {"cifar10": 0.9}}}
    save_checkpoint({"epoch": 3, "records": [record, later]}, tmp_path / "seed-0" / "checkpoint.pt")
    assert gpu_check.epoch_taus(tmp_path) == {"seed-0 epoch 3": {"angle": 0.5, "magnitude": -0.125, "angle s": 0.25}}


def test_the_original_direct_angle_matches_the_block_engine():
    space = get_space("gpu").scaled(0.25, 32, 10)
    torch.manual_seed(0)
    model = space.supernet().double()
    base = snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rng = np.random.default_rng(0)
    archs = np.array([space.random_arch(space.initial_operations(), rng) for _ in range(3)])
    direct = gpu_check.direct_angles(model, base, archs)
    assert torch.allclose(direct, ArchAngles(model, base, space).angles(archs), atol=1e-10)
    assert (direct > 0).all()


def test_fused_sgd_lever_learns_what_plain_sgd_learns_and_leaves_unsampled_weights_alone():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    twins = [(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)) for _ in range(2)]
    for ta, tb in twins:
        ta.load_state_dict(a.state_dict())
        tb.load_state_dict(b.state_dict())

    def groups(pa, pb):
        return [{"params": [pa.weight, pb.weight], "weight_decay": 0.1}, {"params": [pa.bias, pb.bias],
                                                                           "weight_decay": 0.0}]

    plain = torch.optim.SGD(groups(*twins[0]), lr=0.5, momentum=0.9)
    fused = fused_sgd(torch.optim.SGD(groups(*twins[1]), lr=0.5, momentum=0.9))
    x = torch.randn(4, 3)
    for step in range(3):
        for (ta, tb), opt in zip(twins, (plain, fused)):
            opt.zero_grad(set_to_none=True)
            (ta(x) if step == 0 else tb(ta(x))).sum().backward()  # step 0: b is not on the path
            before = tb.weight.detach().clone()
            opt.step()
            if step == 0:
                assert torch.equal(tb.weight, before)  # no decay, no momentum for an unsampled op
    for p, q in zip([*twins[0][0].parameters(), *twins[0][1].parameters()],
                    [*twins[1][0].parameters(), *twins[1][1].parameters()]):
        assert torch.allclose(p, q, atol=1e-6)


@pytest.mark.parametrize("subprocesses", [True, False])
def test_entry_points_report_ok_exit_codes_and_time_caps(tmp_path, subprocesses):
    check = gpu_check.Check(tmp_path / "out", tmp_path / "work", torch.device("cpu"), tiny=True, data_dir=None,
                            subprocesses=subprocesses, budget=60)
    script = tmp_path / "entry.py"
    script.write_text("import sys, time\nprint('args', sys.argv[1:])\nif sys.argv[1] == 'sleep':\n"
                      "    time.sleep(30)\nsys.exit(int(sys.argv[1]) if sys.argv[1] != 'sleep' else 0)\n")
    log = tmp_path / "log.txt"
    assert check.entry(str(script), ["0"], log, 20) == "ok"
    assert "args ['0']" in log.read_text()
    assert check.entry(str(script), ["3"], log, 20) == "failed: exit 3: args ['3']"
    t0 = time.monotonic()
    assert check.entry(str(script), ["sleep"], log, 1.5) == "failed: stopped at its time cap of 2 s"
    assert time.monotonic() - t0 < 10
