"""The table of :mod:`anglenas.nb201.compare`: each run's cell against the ground truth, the baselines of each space,
``compare.json``, the markdown table (mean ± std over seeds, full space vs ABS per searcher) and the figure."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from anglenas.checkpoint import atomic_write_text
from anglenas.nb201.api import DATASETS, Benchmark
from anglenas.nb201.compare import TIMINGS, Table, budget_of, load_result, result_path, space_ops, write_json

GT = "cifar10"
"""The ground truth the table is ranked by (NB201's CIFAR-10 test accuracy; the others are recorded too)."""


def in_space(bench: Benchmark, ops: list[list[int]]) -> np.ndarray:
    """Which of the benchmark's cells (index order) lie in the space of ``ops``."""
    return np.all([np.isin(bench.cells[:, e], site) for e, site in enumerate(ops)], axis=0)


def rank(bench: Benchmark, index: int, dataset: str = GT) -> int:
    """1 for the best of the 15,625 cells on ``dataset``."""
    acc = bench.accuracies(dataset)
    return 1 + int((acc > acc[index]).sum())


def space_record(bench: Benchmark, table: Table, seed: int, space: str) -> dict[str, Any]:
    """A space of the table: its ops, size, best cell left and the expected ground truth of a random cell."""
    ops = space_ops(table, seed, space)
    mask = in_space(bench, ops)
    best = int(np.flatnonzero(mask)[np.argmax(bench.accuracies(GT)[mask])])
    return {"seed": seed, "space": space, "ops": ops, "size": int(mask.sum()), "best_index": best,
            "best": {d: bench.accuracy(best, d) for d in DATASETS},
            "random": {d: float(bench.accuracies(d)[mask].mean()) for d in DATASETS}}


def run_record(bench: Benchmark, table: Table, seed: int, space: str, label: str) -> dict[str, Any]:
    """One search of the table: the cell it found, its ground truth and rank, its wall time, and whether it kept
    to the space."""
    result = load_result(table, seed, space, label)
    cell = tuple(int(op) for op in result.best)
    index = bench.index_of(cell)
    ops = space_ops(table, seed, space)
    return {"seed": seed, "space": space, "searcher": label, "arch": bench[index], "index": index,
            "gt": {d: bench.accuracy(index, d) for d in DATASETS}, "rank": rank(bench, index),
            "wall_seconds": result.cost.get("wall_seconds"),
            "obeyed": all(op in site for op, site in zip(cell, ops)), "result": str(result_path(table, seed, space,
                                                                                                   label))}


def collect(table: Table) -> dict[str, Any]:
    """``compare.json``: the settings, the optimum, every finished space and run, and how much the shrinks of the
    smaller budgets keep of the full budget's operators."""
    bench, cfg = table.bench, table.cfg
    jobs = [j for j in table.jobs() if table.done(*j)]
    spaces = [space_record(bench, table, seed, "full") for seed in sorted({j[0] for j in jobs})]
    spaces += [space_record(bench, table, seed, space.replace("shrink", "abs")) for seed, space, label in jobs
               if label == "abs"]
    runs = [run_record(bench, table, seed, space, label) for seed, space, label in jobs if label != "abs"]
    best = int(np.argmax(bench.accuracies(GT)))
    return {"format": "anglenas-nb201-compare", "version": 1, "config": dataclasses.asdict(cfg), "ground_truth": GT,
            "optimum": {"index": best, "arch": bench[best], "gt": {d: bench.accuracy(best, d) for d in DATASETS}},
            "spaces": spaces, "runs": runs, "shared_operators": shared_operators(spaces),
            "timings": json.loads(times.read_text()) if (times := table.save / TIMINGS).is_file() else {}}


def shared_operators(spaces: list[dict]) -> list[dict]:
    """Per seed and smaller budget: how many of the operators the full-budget shrink keeps this one keeps too."""
    out = []
    for rec in spaces:
        if rec["space"] in ("full", "abs-1"):
            continue
        full = next((s for s in spaces if s["seed"] == rec["seed"] and s["space"] == "abs-1"), None)
        if full is None:
            continue
        kept = {(e, op) for e, site in enumerate(rec["ops"]) for op in site}
        kept_full = {(e, op) for e, site in enumerate(full["ops"]) for op in site}
        out.append({"seed": rec["seed"], "space": rec["space"], "kept": len(kept), "in_common": len(kept & kept_full)})
    return out


def _mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if values else "–"


def markdown(doc: dict) -> str:
    """Mean ± std over seeds of the ground-truth CIFAR-10 accuracy per searcher and space, the baselines under them,
    and the mean wall time of each search."""
    spaces = ordered_spaces(doc)
    head = ["searcher", *[_space_title(s) for s in spaces], "mean wall time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in dict.fromkeys(r["searcher"] for r in doc["runs"]):
        cells = [_mean_std([r["gt"][GT] for r in doc["runs"] if r["searcher"] == label and r["space"] == s])
                 for s in spaces]
        walls = [r["wall_seconds"] for r in doc["runs"] if r["searcher"] == label and r["wall_seconds"]]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {np.mean(walls):.0f} s |")
    for name, key in (("best cell left", "best"), ("random cell (expected)", "random")):
        cells = [_mean_std([rec[key][GT] for rec in doc["spaces"] if rec["space"] == s]) for s in spaces]
        lines.append(f"| *{name}* | " + " | ".join(cells) + " | |")
    lines.append(f"| *optimum (index {doc['optimum']['index']})* | " + " | ".join(
        f"{doc['optimum']['gt'][GT]:.2f}" for _ in spaces) + " | |")
    lines += ["", "Cells left per seed: " + "; ".join(
        f"{_space_title(s)} " + ", ".join(str(rec["size"]) for rec in doc["spaces"] if rec["space"] == s)
        for s in spaces) + "."]
    for space in dict.fromkeys(rec["space"] for rec in doc["shared_operators"]):
        shared = [rec for rec in doc["shared_operators"] if rec["space"] == space]
        lines.append(f"Operators the {_space_title(space)} shrink keeps in common with the full budget's, per seed: "
                     + ", ".join(f"{rec['in_common']} of {rec['kept']}" for rec in shared) + ".")
    return "\n".join(lines)


def ordered_spaces(doc: dict) -> list[str]:
    """The spaces of the runs: the full one, then ABS' by budget, largest first."""
    return sorted({r["space"] for r in doc["runs"]}, key=lambda s: (s != "full", -budget_of(s) if s != "full" else 0))


def _space_title(space: str) -> str:
    return "full space" if space == "full" else f"ABS ({float(space.split('-')[1]):.0%} budget)"


def plot(doc: dict, path: str | Path | None = None) -> Figure:
    """Ground-truth CIFAR-10 accuracy of the cell each searcher found, per space, every seed a point."""
    spaces = ordered_spaces(doc)
    labels = list(dict.fromkeys(r["searcher"] for r in doc["runs"]))
    fig = Figure(figsize=(max(5.5, 0.9 * len(labels) + 2), 3.8), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(spaces)
    low = min(r["gt"][GT] for r in doc["runs"]) - 2  # a baseline further down is named in the legend, not drawn
    for k, space in enumerate(spaces):
        xs, ys = [], []
        for i, label in enumerate(labels):
            found = [r["gt"][GT] for r in doc["runs"] if r["searcher"] == label and r["space"] == space]
            xs += [i + (k - (len(spaces) - 1) / 2) * width] * len(found)
            ys += found
        dots = ax.scatter(xs, ys, s=22, label=_space_title(space), alpha=0.8)
        random = np.mean([rec["random"][GT] for rec in doc["spaces"] if rec["space"] == space])
        below = f": {random:.1f}, below the axis" if random < low else ""
        ax.axhline(random, color=dots.get_facecolor()[0], ls=":", lw=1.2,
                   label=f"random cell, {_space_title(space)}{below}")
    ax.axhline(doc["optimum"]["gt"][GT], color="grey", ls="--", lw=1, label="optimum")
    ax.set_ylim(low, doc["optimum"]["gt"][GT] + 1)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylabel("CIFAR-10 test accuracy of the cell found (%)")
    ax.set_title("NAS-Bench-201: each searcher in the full space and in the ABS-shrunk space", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig


def write_outputs(table: Table) -> dict:
    """``compare.json``, ``compare.md`` and ``compare.png`` in the table's folder, from its finished runs."""
    doc = collect(table)
    write_json(table.save / "compare.json", doc)
    text = markdown(doc)
    atomic_write_text(table.save / "compare.md", text + "\n")
    fig = plot(doc, table.save / "compare.png")
    table.logger.figure("nb201/compare", fig, len(doc["runs"]))
    table.logger.info(f"NB201 ground truth ({GT} test accuracy, mean ± std over seeds) of the cell each search "
                      f"found:\n{text}")
    return doc
