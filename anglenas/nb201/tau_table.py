"""The tau table of the angle experiment (``tau_table.json`` / ``tau_table.md``): every metric's Kendall tau and
Spearman rho against the ground truth, per seed and as mean / std over seeds, and tau per evaluated epoch."""
from __future__ import annotations

import numpy as np

from anglenas.nb201.api import DATASETS as GT_DATASETS
from anglenas.nb201.api import Benchmark
from anglenas.nb201.metrics import kendall_tau, random_scores, spearman_rho

METRICS = ("angle", "magnitude", "random", "acc_rebn", "acc_no_rebn", "angle_acc_subset")
"""Scores ranked against the ground truth; the accuracy ones and ``angle_acc_subset`` on the sampled subset."""


def final_taus(scores: dict[str, np.ndarray], bench: Benchmark, seed: int) -> dict[str, dict[str, dict]]:
    """{"tau" | "rho": {metric: {gt dataset: value}}} of one seed's final scores."""
    subset = scores["acc_subset"]
    ranked = {"angle": (scores["angle"], slice(None)), "magnitude": (scores["magnitude"], slice(None)),
              "random": (random_scores(len(bench), seed), slice(None))}
    if len(subset) > 1:
        ranked.update(acc_rebn=(scores["acc_rebn"], subset), acc_no_rebn=(scores["acc_no_rebn"], subset),
                      angle_acc_subset=(scores["angle"][subset], subset))
    out: dict[str, dict[str, dict]] = {"tau": {}, "rho": {}}
    for metric, (values, index) in ranked.items():
        out["tau"][metric] = {d: kendall_tau(values, bench.accuracies(d)[index]) for d in GT_DATASETS}
        out["rho"][metric] = {d: spearman_rho(values, bench.accuracies(d)[index]) for d in GT_DATASETS}
    return out


def _mean_std(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v)), "min": float(np.nanmin(v)),
            "max": float(np.nanmax(v))}


def summarize(per_seed: dict[int, dict], records: dict[int, list[dict]], ground_truth: str) -> dict:
    """Mean / std over seeds of every metric's tau and rho, per ground-truth dataset, and tau per epoch."""
    seeds = sorted(per_seed)
    metrics = [m for m in METRICS if all(m in per_seed[s]["tau"] for s in seeds)]
    table = {kind: {m: {d: _mean_std([per_seed[s][kind][m][d] for s in seeds]) for d in GT_DATASETS}
                    for m in metrics} for kind in ("tau", "rho")}
    epochs = sorted({r["epoch"] for s in seeds for r in records[s]})
    per_epoch = {m: {str(e): _mean_std([r["tau"][m][ground_truth] for s in seeds for r in records[s]
                                         if r["epoch"] == e]) for e in epochs} for m in ("angle", "magnitude")}
    return {"ground_truth": ground_truth, "seeds": seeds, "table": table, "per_epoch": per_epoch,
            "per_seed": {str(s): per_seed[s] for s in seeds}}


def markdown_table(summary: dict) -> str:
    """The tau (mean +- std over seeds) of every metric against each ground truth, as a Markdown table."""
    lines = ["| metric | " + " | ".join(f"tau {d}" for d in GT_DATASETS) + " |",
             "|---|" + "---|" * len(GT_DATASETS)]
    for metric, cols in summary["table"]["tau"].items():
        lines.append(f"| {metric} | " + " | ".join(f"{c['mean']:.3f} ± {c['std']:.3f}" for c in cols.values()) + " |")
    return "\n".join(lines)
