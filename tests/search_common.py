"""Shared tiny settings of the search tests: a real search on the embedded data that takes seconds."""
import json
import subprocess
import sys
from pathlib import Path

from anglenas.operations import Operations
from anglenas.spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
SEARCHING = ROOT / "searching"
TINY = ["--dataset", "embedded", "--width_mult", "0.25", "--stem_stride", "2", "--batch_size", "64", "--epochs", "0",
        "--bn_images", "64", "--bn_batch_size", "32", "--val_images", "100", "--population_num", "6",
        "--select_num", "3", "--crossover_num", "2", "--mutation_num", "2", "--max_epochs", "3", "--topk", "2",
        "--device", "cpu", "--workers", "0", "--eval_threads", "1", "--seed", "3"]


def write_operations(path: Path) -> Path:
    """A shrunk GPU space: 2 ops per layer (identity where allowed), fixed by hand."""
    space = get_space("gpu")
    ops = [[1, -1] if layer.identity_allowed and i % 2 else [0, 4] if i % 3 else [2, 5]
           for i, layer in enumerate(space.layers)]
    Operations(space, ops).save(path)
    return path


def main_cmd(save: Path, ops: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SEARCHING / "main.py"), *TINY, "--operations_path", str(ops), "--save", str(save),
            *extra]


def run_main(save: Path, ops: Path, *extra: str, timeout: float = 240) -> dict:
    proc = subprocess.run(main_cmd(save, ops, *extra), cwd=SEARCHING, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return json.loads((save / "search_result.json").read_text())


def search_in_process(argv: list[str], searcher: str = "spos") -> dict:
    """Run the search stage in this process; the search_result.json it wrote."""
    from anglenas.stages.search import parse_search, run_folder, run_search

    chosen, cfg = parse_search(argv, searcher)
    run_search(chosen, cfg)
    return json.loads((run_folder(cfg) / "search_result.json").read_text())


def journal_results(save: Path) -> list[tuple[int, ...]]:
    """Architectures of every result line in the evaluation journal (a cut last line is skipped)."""
    archs = []
    for line in (save / "evaluations.jsonl").read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec["event"] == "result":
            archs.append(tuple(rec["arch"]))
    return archs
