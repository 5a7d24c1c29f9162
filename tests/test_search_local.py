"""The search stage with the in-process backend: output format, FLOPs limits, resume after SIGKILL."""
import json
import pickle
import signal
import subprocess
import time

import numpy as np
import pytest
from search_common import SEARCHING, TINY, journal_results, main_cmd, run_main, search_in_process, write_operations

from anglenas.config import parse_config
from anglenas.errors import UserError
from anglenas.operations import load_operations
from anglenas.searchers.spos.search import SearchConfig, make_sampler
from anglenas.spaces import get_space, reference_table


@pytest.mark.slow
def test_killed_search_resumes_to_the_same_result_without_re_evaluating(tmp_path):
    ops = write_operations(tmp_path / "ops.json")
    original = tmp_path / "ops.pkl"  # the reference reads the same space from an original-style pickle
    original.write_bytes(pickle.dumps([[np.int64(op) for op in layer] for layer in load_operations(ops).ops]))
    ref = search_in_process(TINY + ["--max_epochs", "2", "--operations_path", str(original),
                                    "--save", str(tmp_path / "ref")])

    save = tmp_path / "killed"
    proc = subprocess.Popen(main_cmd(save, ops, "--max_epochs", "2"), cwd=SEARCHING, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:  # kill inside the second generation
        if (save / "evaluations.jsonl").is_file() and len(journal_results(save)) >= 8:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = journal_results(save)
    assert 8 <= len(before) < len(journal_results(tmp_path / "ref"))
    result = run_main(save, ops, "--max_epochs", "2")

    assert result["top"] == ref["top"] and result["generations"] == ref["generations"]
    evaluated = journal_results(save)
    assert len(evaluated) == len(set(evaluated)), "a candidate was evaluated twice"
    assert evaluated[: len(before)] == before
    assert sorted(evaluated) == sorted(journal_results(tmp_path / "ref"))


def test_result_file_format_and_flops_limits(tmp_path):
    ops_path = write_operations(tmp_path / "ops.json")
    doc = search_in_process(TINY + ["--operations_path", str(ops_path), "--save", str(tmp_path / "r"),
                                    "--max_epochs", "2", "--max_flops", "330e6"])
    table, ops = reference_table("gpu"), load_operations(ops_path).ops
    assert doc["format"] == "anglenas-search-result" and doc["version"] == 2 and doc["space"] == "gpu"
    assert doc["searcher"] == "spos" and doc["score_name"] and doc["cost"]["wall_seconds"] > 0
    assert doc["operations"] == ops and doc["flops_limits"] == [None, 330e6]
    assert len(doc["top"]) == 2 and len(doc["generations"]) == 2
    for entry in doc["top"]:
        arch = entry["arch"]
        assert entry["arch_str"] == " ".join(map(str, arch))
        assert all(op in layer for op, layer in zip(arch, ops))
        assert entry["flops_m"] == pytest.approx(table.arch_flops(arch) / 1e6) and entry["flops_m"] <= 330
        assert entry["params_m"] == pytest.approx(table.arch_params(arch) / 1e6)
    assert doc["top"][0]["top1"] >= doc["top"][1]["top1"]
    assert [e["score"] for e in doc["top"]] == [e["top1"] for e in doc["top"]]
    evaluated = journal_results(tmp_path / "r")
    assert all(table.arch_flops(a) <= 330e6 for a in evaluated)
    accs = {tuple(json.loads(line)["arch"]): json.loads(line)["top1"]
            for line in (tmp_path / "r" / "evaluations.jsonl").read_text().splitlines()}
    assert doc["top"][0]["top1"] == max(accs.values())
    assert (tmp_path / "r" / "search_generations.png").stat().st_size > 0


def test_fairnas_needs_equal_op_counts(tmp_path):
    ops = load_operations(write_operations(tmp_path / "ops.json")).ops
    make_sampler("fairnas", [[0, 1]] * 21, 0, get_space("gpu"))  # equal counts are fine
    with pytest.raises(UserError, match="same number of ops in every layer"):
        make_sampler("fairnas", [ops[0] + [3]] + ops[1:], 0, get_space("gpu"))


@pytest.mark.slow
def test_local_worker_processes_give_the_in_process_numbers(tmp_path):
    import torch

    from anglenas.checkpoint import save_checkpoint
    from anglenas.searchers.spos.evaluate import CandidateEvaluator, LocalPoolEvaluator
    from anglenas.spaces import get_space
    from anglenas.spaces.mobilenet.supernet import MobileSuperNet

    cfg = parse_config(SearchConfig, TINY + ["--operations_path", "x"])
    settings = cfg.eval_settings("gpu")
    torch.manual_seed(1)
    weights = tmp_path / "supernet.pt"
    save_checkpoint({"model": MobileSuperNet(get_space("gpu").scaled(0.25, 32, 10, 2)).state_dict()}, weights)
    archs = [tuple([0] * 21), tuple([4] * 21), tuple([1, 2] * 10 + [3])]
    pool = LocalPoolEvaluator(settings, cfg, torch.device("cpu"), weights, workers=2, threads=1)
    got = {}
    try:
        pool.evaluate(archs, lambda arch, top1: got.__setitem__(arch, top1))
    finally:
        pool.close()
    torch.set_num_threads(1)
    direct = CandidateEvaluator(settings, cfg, "cpu")
    direct.load(weights)
    assert got == {arch: direct(arch) for arch in archs}


def test_a_small_space_is_searched_exhaustively_without_error():
    """2 x 2 = 4 architectures, 3 a generation, 5 generations: the search ends once all 4 are scored."""
    from anglenas.searchers.spos.evolution import EvolutionConfig, EvolutionSearch

    class Score:
        def evaluate(self, archs, on_result):
            for arch in archs:
                on_result(arch, float(sum(arch)))

    search = EvolutionSearch([[0, 1], [2, 3]], EvolutionConfig(population_num=3, select_num=2, crossover_num=1,
                                                                max_epochs=5), seed=0)
    while not search.done:
        search.step(Score())
    assert search.epoch < 5 and sorted(search.results) == [(0, 2), (0, 3), (1, 2), (1, 3)]
    assert search.best(1) == [((1, 3), 4.0)]
