"""Every entry point checks its input before it creates anything: each count, size, rate and fraction against the
range declared beside its field (flags and YAML alike), an unwritable run folder in one line, and input refused
later (data that is not there, a batch larger than the data) leaves no folder behind; each stage takes its CPU
threads from the cores this process may use and says how many at start."""
from __future__ import annotations

import dataclasses
import math
import os
import runpy
import typing
from pathlib import Path

import pytest
import torch
from demo_plans import settings  # the settings an entry point parses, without running it

from anglenas.config import _base_type, field_meta
from anglenas.log import RunLogger
from anglenas.searchers.registry import searcher_names

ROOT = Path(__file__).resolve().parents[1]

PARSED = ["shrinking/main.py", "training/train_from_scratch.py", "darts-master/train.py", "searching/test_server.py",
          "nas-bench-201/angle_tau.py", "nas-bench-201/drop_ops.py", "nas-bench-201/search.py",
          "nas-bench-201/train_supernet.py", "nas-bench-201/train_arch.py", "nas-bench-201/standalone_tau.py",
          "nas-bench-201/query.py", "nas-bench-201/compare_searchers.py", "figure/nb201_figures.py",
          "utils/get_flops_lookup_table.py", "utils/arch_flops.py"]
"""Entry points that read a config dataclass (utils/show_space.py takes a path and a space name only)."""
SEARCHES = [("searching/main.py", ["--searcher", name]) for name in searcher_names()] + [
    ("searching/imagenet_arch_search.py", []), ("darts-master/train_search.py", []),
    ("pdarts-master/train_search.py", []), ("darts-master/search_evolutionary.py", [])]
"""Entry points of the search stage, searching/main.py with every registered searcher."""
ALL = [(script, []) for script in PARSED] + SEARCHES

RUNS = {"shrinking/main.py": [], "searching/main.py": [], "searching/imagenet_arch_search.py": [],
        "darts-master/train_search.py": [], "pdarts-master/train_search.py": [],
        "darts-master/search_evolutionary.py": [], "training/train_from_scratch.py": [], "darts-master/train.py": [],
        "nas-bench-201/angle_tau.py": [], "nas-bench-201/drop_ops.py": [], "nas-bench-201/search.py": [],
        "nas-bench-201/train_supernet.py": [], "nas-bench-201/train_arch.py": ["--index", "5"],
        "nas-bench-201/standalone_tau.py": []}
"""Entry points that write a run folder (--save), with what their --demo needs besides."""
MISSING_DATA = {"darts-master/search_evolutionary.py": ["--train_path", "{missing}"],
                "darts-master/train.py": ["--dataset", "auto", "--data", "{missing}"]}
"""How each run is pointed at data that is not there (default: --dataset cifar10 --data_dir MISSING)."""


def main_of(script: str):
    return runpy.run_path(str(ROOT / script))["main"]


def refused(script: str, argv: list[str], capsys) -> str:
    """The one line ``script`` prints when it refuses ``argv`` (exit code 2)."""
    with pytest.raises(SystemExit) as exit_:
        main_of(script)(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    return err.strip()


def numeric_fields(cfg) -> list[tuple[str, type, dict]]:
    hints = typing.get_type_hints(type(cfg))
    out = []
    for f in dataclasses.fields(cfg):
        base, _ = _base_type(hints[f.name])
        item = typing.get_args(base)[0] if typing.get_origin(base) is tuple else base
        if item in (int, float):
            out.append((f.name, item, field_meta(type(cfg), f.name)))
    return out


@pytest.mark.parametrize("script,argv", ALL, ids=[" ".join([s, *a]) for s, a in ALL])
def test_every_number_of_every_entry_point_declares_its_range(script, argv):
    cfg = settings(script, argv)[1]
    missing = [name for name, _, meta in numeric_fields(cfg) if "low" not in meta and "high" not in meta]
    assert not missing, f"{script}: {type(cfg).__name__} fields without a range: {missing}"


def _outside(kind: type, meta: dict) -> list[tuple[float, str]]:
    """Values just outside the declared range, each with the range's text as the error names it."""
    low, high = meta.get("low"), meta.get("high")
    text = f"{low:g} to {high:g}" if low is not None and high is not None else \
        f">= {low:g}" if low is not None else f"<= {high:g}"
    step = 1 if kind is int else max(abs(low if low is not None else high) * 0.5, 0.5)
    values = ([low - step] if low is not None else []) + ([high + step] if high is not None else [])
    return [(int(v) if kind is int else v, text) for v in values]


@pytest.mark.parametrize("script,argv", ALL, ids=[" ".join([s, *a]) for s, a in ALL])
def test_every_number_outside_its_range_is_refused_from_flags_and_yaml(script, argv, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = settings(script, argv)[1]
    for name, kind, meta in numeric_fields(cfg):
        for value, text in _outside(kind, meta):
            shown = f"{value:g}"
            assert refused(script, [*argv, f"--{name}", str(value)], capsys) == \
                f"error: --{name} must be {text}, got {shown}"
            yaml = tmp_path / "bad.yaml"
            yaml.write_text(f"{name}: {value}\n")
            assert refused(script, [*argv, "--config", str(yaml)], capsys) == \
                f"error: --{name} must be {text}, got {shown}"
            yaml.unlink()
    assert list(tmp_path.iterdir()) == []  # refused before anything was created


@pytest.mark.parametrize("script,argv,message", [
    ("darts-master/train_search.py", ["--demo", "--epochs", "-3"], "error: --epochs must be >= 1, got -3"),
    ("nas-bench-201/train_arch.py", ["--index", "5", "--epochs", "-2"], "error: --epochs must be >= 1, got -2"),
    ("nas-bench-201/train_arch.py", ["--index", "15625"], "error: --index must be 0 to 15624, got 15625"),
    ("searching/main.py", ["--demo", "--m_prob", "1.5"], "error: --m_prob must be 0 to 1, got 1.5"),
    ("utils/get_flops_lookup_table.py", ["--space", "gpu", "nb201", "--num_classes", "0"],
     "error: --num_classes must be >= 1, got 0"),
    ("utils/arch_flops.py", ["--arch", "FAIRNAS_ABS", "--rank", "-1"], "error: --rank must be >= 0, got -1"),
])
def test_the_issue_s_examples_are_refused_in_one_line(script, argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the default run folders would be here
    assert refused(script, argv, capsys) == message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv,message", [
    (["--dropout_rate", "0.1,1.5,0.7"], "error: --dropout_rate values must be 0 to 1, got 1.5"),
    (["--add_layers", "0,-6,12"], "error: --add_layers values must be >= 0, got -6"),
    (["--num_to_drop", "3,0,4"], "error: --num_to_drop values must be >= 1, got 0"),
    (["--eval_epochs", "1,x"], "error: --eval_epochs must be comma-separated epoch numbers, got '1,x'"),
])
def test_every_value_of_a_list_flag_is_checked_before_anything_is_created(argv, message, capsys, tmp_path):
    script = "nas-bench-201/angle_tau.py" if argv[0] == "--eval_epochs" else "pdarts-master/train_search.py"
    assert refused(script, ["--demo", *argv, "--save", str(tmp_path / "run")], capsys) == message
    assert list(tmp_path.iterdir()) == []


def test_range_text_shows_in_help(capsys):
    with pytest.raises(SystemExit):
        main_of("nas-bench-201/train_arch.py")(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--epochs EPOCHS training epochs (>= 1)" in text and "(0 to 15624)" in text


@pytest.mark.parametrize("script", RUNS)
def test_an_unwritable_run_folder_is_refused_in_one_line_before_any_work(script, capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = refused(script, ["--demo", *RUNS[script], "--save", str(blocker / "run")], capsys)
    assert line.startswith(f"error: cannot write the run folder '{blocker / 'run'}") and \
        f"'{blocker}' is a file, not a folder; pass a writable --save" in line
    assert sorted(tmp_path.iterdir()) == [blocker]


@pytest.mark.parametrize("script,argv,what,flag", [
    ("utils/get_flops_lookup_table.py", ["--space", "nb201"], "lookup-table folder", "--save_dir"),
    ("nas-bench-201/compare_searchers.py", ["--demo"], "run folder", "--save"),
    ("figure/nb201_figures.py", ["--run", "{run}"], "figure folder", "--out")])
def test_every_other_output_folder_is_checked_in_one_line(script, argv, what, flag, capsys, tmp_path):
    """The entry points that write outside a stage's run folder: lookup tables, the comparison table, figures."""
    run = tmp_path / "tau-run"
    run.mkdir()
    (run / "tau_table.json").write_text("{}")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = refused(script, [*[a.format(run=run) for a in argv], flag, str(blocker / "out")], capsys)
    assert line == f"error: cannot write the {what} '{blocker / 'out'}': '{blocker}' is a file, not a folder; " \
                   f"pass a writable {flag}"
    assert sorted(tmp_path.iterdir()) == [blocker, run] and list(run.iterdir()) == [run / "tau_table.json"]


def test_a_figure_of_a_file_that_is_no_tau_table_is_refused_in_one_line(capsys, tmp_path):
    (tmp_path / "tau_table.json").write_text('{"seeds": []}')
    assert refused("figure/nb201_figures.py", ["--run", str(tmp_path)], capsys) == \
        f"error: {tmp_path / 'tau_table.json'} is not the tau table of an angle_tau.py run (it lacks its seeds, " \
        "per-epoch taus or ground truth); pass --run with the --save folder of angle_tau.py"

@pytest.mark.parametrize("script", RUNS)
def test_input_refused_after_parsing_leaves_no_folder_behind(script, capsys, tmp_path):
    missing = tmp_path / "no-data"
    flags = MISSING_DATA.get(script, ["--dataset", "cifar10", "--data_dir", "{missing}"])
    save = tmp_path / "runs" / "new"
    line = refused(script, ["--demo", *RUNS[script], *[f.format(missing=missing) for f in flags], "--save", str(save)],
                   capsys)
    assert str(missing) in line and "does not exist" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("script", ["shrinking/main.py", "searching/main.py", "training/train_from_scratch.py",
                                    "nas-bench-201/angle_tau.py", "nas-bench-201/train_arch.py",
                                    "nas-bench-201/standalone_tau.py"])
def test_a_batch_larger_than_the_data_leaves_no_folder_behind(script, capsys, tmp_path):
    line = refused(script, ["--demo", *RUNS[script], "--batch_size", "100000", "--save", str(tmp_path / "run")],
                   capsys)
    assert "fewer than" in line and "100000" in line
    assert list(tmp_path.iterdir()) == []


class Started(Exception):
    """Raised at a run's first log line that names its CPU threads: the test has what it wants."""


@pytest.fixture
def three_cores(monkeypatch):
    """This process may run on 3 cores (as ``taskset -c 0-2`` would grant); torch's threads restored afterwards."""
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    yield
    torch.set_num_threads(before)


@pytest.fixture
def start_lines(monkeypatch) -> list[str]:
    """The log lines of a run up to the one naming its CPU threads, where it stops by :class:`Started`."""
    lines: list[str] = []

    def info(self, message):
        lines.append(message)
        if "CPU thread" in message:
            raise Started

    monkeypatch.setattr(RunLogger, "info", info)
    return lines


@pytest.mark.parametrize("script,argv", [(s, RUNS[s]) for s in RUNS if s != "searching/main.py"] + [
    ("searching/main.py", ["--searcher", name]) for name in searcher_names()])
def test_every_stage_takes_the_cores_it_may_use_and_says_so_at_start(script, argv, three_cores, start_lines,
                                                                     tmp_path):
    lines = start_lines
    demo_threads = ["--threads", "0"]  # some demos set one thread
    with pytest.raises(Started):
        main_of(script)(["--demo", *argv, *demo_threads, "--save", str(tmp_path / "run")])
    assert "3 CPU thread" in lines[-1], lines
    assert torch.get_num_threads() == 3


def test_threads_flag_beats_the_cores(three_cores, start_lines, tmp_path):
    lines = start_lines
    with pytest.raises(Started):
        main_of("nas-bench-201/train_arch.py")(["--demo", "--index", "5", "--threads", "2", "--save",
                                                str(tmp_path / "run")])
    assert "2 CPU thread" in lines[-1] and torch.get_num_threads() == 2


def test_the_local_evaluation_workers_share_the_cores(monkeypatch):
    from anglenas.searchers.spos import evaluate

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    started = []

    class Pool:
        def __init__(self, n, init, args):
            started.append(args[-1])

    class Context:
        Pool = staticmethod(lambda n, init, args: Pool(n, init, args))

    monkeypatch.setattr(evaluate.mp, "get_context", lambda kind: Context())
    evaluate.LocalPoolEvaluator(None, None, torch.device("cpu"), "w.pt", workers=3)
    evaluate.LocalPoolEvaluator(None, None, torch.device("cpu"), "w.pt", workers=3, threads=5)
    assert started == [math.floor(8 / 3)] * 3 + [5] * 3


def test_a_test_server_takes_the_cores_it_may_use(three_cores):
    from anglenas.config import parse_config
    from anglenas.searchers.spos.server import DEMO, ServerConfig, TestServer

    assert TestServer(parse_config(ServerConfig, ["--demo"], presets={"demo": DEMO})).threads == 3
    assert TestServer(parse_config(ServerConfig, ["--demo", "--threads", "2"], presets={"demo": DEMO})).threads == 2
    assert torch.get_num_threads() == 2
