"""bench/gpu_check.py: the tiny CPU run reports every section, and its parts compute what they claim."""
import json
import os
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

import gpu_check  # noqa: E402
from common import direct_angles  # noqa: E402
from gpucheck.caps import Caps, TimeCap  # noqa: E402
from gpucheck.check import Check  # noqa: E402
from gpucheck.nb201_tau import drop_flags, epoch_taus  # noqa: E402
from gpucheck.report import markdown  # noqa: E402
from gpucheck.smoke import EXPECTED_SEARCHERS, config_flags, searcher_stages  # noqa: E402
from gpucheck.stages import Stage, run_stages  # noqa: E402

TITLES = ["1. CUDA smoke of every stage", "2. Supernet training img/s", "3. One ABS round",
          "4. Final training and data loading img/s", "5. bf16 vs fp32: the angle's ranking and drops",
          "6. NB201 tau with the rest of the budget"]


def numbers(section: dict) -> list[float]:
    """Every measured number of a section (its tables and figures)."""
    found = []
    for table in section["tables"].values():
        for row in table.values():
            found += [v for v in (row.values() if isinstance(row, dict) else [row])
                      if isinstance(v, (int, float)) and not isinstance(v, bool)]
    found += [v for v in section["figures"].values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return found


@pytest.mark.slow
def test_tiny_cpu_run_reports_every_section_with_numbers_or_a_reason(tmp_path):
    t0 = time.monotonic()
    report = gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--tiny"])
    elapsed = time.monotonic() - t0
    on_disk = json.loads((tmp_path / "gpu_check.json").read_text())
    # budget 60 s; a long C call can overrun a cap by a few seconds
    assert elapsed < 90, {k: (s["status"], s["seconds"]) for k, s in on_disk["sections"].items()}
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
    caps = Caps()
    t0 = time.monotonic()
    with pytest.raises(TimeCap) as outer_hit:
        with caps.cap(0.6, "outer") as outer:
            with pytest.raises(TimeCap) as inner_hit:
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
    assert drop_flags(argv, ["--a", "--b"]) == ["--c", "x", "--d", "2"]
    assert drop_flags(argv, ["--c"]) == ["--a", "1", "--b", "--d", "2"]


def test_epoch_taus_come_from_the_runs_checkpoints(tmp_path):
    record = {"epoch": 3, "angle_seconds": 0.25, "tau": {"angle": {"cifar10": 0.5, "cifar100": 0.1},
                                                         "magnitude": {"cifar10": -0.125}}}
    later = {"epoch": 3, "angle_seconds": 9.0, "tau": {"angle": {"cifar10": 0.9}, "magnitude": {"cifar10": 0.9}}}
    save_checkpoint({"epoch": 3, "records": [record, later]}, tmp_path / "seed-0" / "checkpoint.pt")
    assert epoch_taus(tmp_path) == {"seed-0 epoch 3": {"angle": 0.5, "magnitude": -0.125, "angle s": 0.25}}


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
    direct = direct_angles(model, base, archs)
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
    check = Check(tmp_path / "out", tmp_path / "work", torch.device("cpu"), tiny=True, data_dir=None,
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


def test_an_in_process_cap_turned_into_another_error_is_still_the_cap(tmp_path):
    check = Check(tmp_path / "out", tmp_path / "work", torch.device("cpu"), tiny=True, data_dir=None,
                  subprocesses=False, budget=60)
    script = tmp_path / "converts.py"  # as torch.save does when the cap comes inside its writer
    script.write_text("import time\ntry:\n    time.sleep(30)\nexcept BaseException as exc:\n"
                      "    raise RuntimeError('unexpected pos') from exc\n")
    t0 = time.monotonic()
    assert check.entry(str(script), [], tmp_path / "log.txt", 1.5) == "failed: stopped at its time cap of 2 s"
    assert time.monotonic() - t0 < 10 and check.caps.stack == []


def test_parallel_stages_overlap_wait_for_their_input_and_get_their_share_of_the_cores(tmp_path):
    check = Check(tmp_path / "out", tmp_path / "work", torch.device("cpu"), tiny=True, data_dir=None,
                  subprocesses=True, budget=60, parallel=2)
    script = tmp_path / "stage.py"
    script.write_text(
        "import os, sys, time\n"
        "mode, path = sys.argv[1], sys.argv[2]\n"
        "print('cores', len(os.sched_getaffinity(0)), 'threads', os.environ['OMP_NUM_THREADS'])\n"
        "if mode == 'wait':\n"  # ends only once the other stage has run: both ran at once
        "    deadline = time.time() + 20\n"
        "    while not os.path.exists(path) and time.time() < deadline:\n"
        "        time.sleep(0.05)\n"
        "    open(path + '.seen', 'w').close()\n"
        "    sys.exit(0 if os.path.exists(path) else 4)\n"
        "if mode == 'make':\n"
        "    open(path, 'w').close()\n"
        "if mode == 'read':\n"
        "    sys.exit(0 if os.path.exists(path) else 5)\n"
        "if mode == 'fail':\n"
        "    sys.exit(3)\n")
    flag = str(tmp_path / "flag")
    stages = [Stage("waiter", str(script), ["wait", flag]), Stage("maker", str(script), ["make", flag]),
              Stage("reader", str(script), ["read", flag + ".seen"], after="waiter"),
              Stage("failing", str(script), ["fail", flag], notes={"note": "kept"})]
    table: dict = {}
    share = max(len(os.sched_getaffinity(0)) // 2, 1)  # each of the 2 stages at once gets half the cores
    t0 = time.monotonic()
    run_stages(check, stages, table, 30)
    assert time.monotonic() - t0 < 25
    assert {k: v["status"] for k, v in table.items()} == {
        "waiter": "ok", "maker": "ok", "reader": "ok", "failing": f"failed: exit 3: cores {share} threads {share}"}
    assert table["failing"]["note"] == "kept" and all(v["seconds"] >= 0 for v in table.values())
    assert (check.work / "logs" / "maker.txt").read_text() == f"cores {share} threads {share}\n"


def test_every_registered_searcher_is_smoked_on_its_home_space_and_nb201(tmp_path):
    stages = {s.name: s for s in searcher_stages(tmp_path)}
    homes = {"spos": "gpu", "fairnas": "fairnas", "rsps": "gpu", "proxylessnas": "gpu", "darts": "darts",
             "pdarts": "darts", "pertnas": "darts"}
    assert set(homes) == set(EXPECTED_SEARCHERS)
    expected = {f"searcher {n} on {sp}" for n, home in homes.items() for sp in (home, "nb201")}
    assert len(expected) == 14 and expected <= stages.keys()
    for name in expected:
        argv = stages[name].argv
        searcher, space = name.split()[1], name.split()[3]
        assert stages[name].script == "searching/main.py" and "--demo" in argv
        assert argv[argv.index("--searcher") + 1] == searcher and argv[argv.index("--space") + 1] == space
        assert argv[argv.index("--save") + 1] == str(tmp_path / f"searcher-{searcher}-{space}")
        assert not stages[name].notes  # every tiny flag is one of the searcher's


def test_config_flags_are_each_field_its_dashed_spelling_and_aliases():
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        eval_resume: str = ""
        save: str = ""
        flag_aliases = {"path": "save"}

    assert config_flags(Cfg) == {"--eval_resume", "--eval-resume", "--save", "--path"}


def test_markdown_tables_escape_pipes_and_show_plain_values():
    report = {"device": "CPU", "torch": "2", "cuda": None, "cudnn": None, "python": "3", "host_cpus": 2,
              "started": "now", "tiny": True, "sections": {"s": {
                  "title": "1. S", "status": "ok", "cap_s": 5, "seconds": 1.0,
                  "tables": {"t": {"a": {"status": "failed: x | y"}, "b": 7}}, "figures": {"f": 2}}}}
    md = markdown(report)
    assert "| a | failed: x \\| y |  |" in md and "| b |  | 7 |" in md and "| | status | value |" in md
    assert "- f: 2" in md
