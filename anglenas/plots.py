"""Figures: ABS angle scores per round. Built with matplotlib's object API (no pyplot state, nothing to close)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure


def plot_angle_scores(history: list[dict], space, path: str | Path | None = None):
    """One heatmap per round, layers x ops coloured by angle score on that round's own scale (W0 may be
    replaced between rounds); red x = dropped that round, grey = absent, dot = the layer's only op."""
    num_layers, labels = space.num_sites, [_short(name) for name in space.op_names]
    n = len(history)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.6 * cols, 0.19 * num_layers * rows + 1.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    cmap = matplotlib.colormaps["viridis"].copy()
    cmap.set_bad("#e6e6e6")
    for ax, rec in zip(axes.flat, history):
        grid = np.full((num_layers, len(labels)), np.nan)
        for layer, op, score in rec["scores"]:
            grid[layer, op % len(labels)] = score
        image = ax.imshow(grid, cmap=cmap, aspect="auto", interpolation="nearest")
        for layer, ops in enumerate(rec["ops_before"]):
            if len(ops) == 1:
                ax.plot(ops[0] % len(labels), layer, "o", color="#444444", ms=2.5)
        for layer, op in rec["dropped"]:
            ax.plot(op % len(labels), layer, "x", color="red", ms=5, mew=1.5)
        ax.set_title(f"round {rec['round']}: {rec['size']:.2g} left", fontsize=8)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(0, num_layers, 2), [str(i) for i in range(0, num_layers, 2)], fontsize=6)
        ax.set_ylabel("layer", fontsize=7)
        bar = fig.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
        bar.ax.tick_params(labelsize=6)
        bar.set_label("angle (rad)", fontsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"ABS on {space.name}: operator scores per round: mean angle of the children containing each operator "
                 "(red x: dropped, dot: last op of its layer)", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig


def _short(name: str) -> str:
    """A compact tick label: mobilenet_5x5_ratio_3 -> 5x5 e3."""
    return name.replace("mobilenet_", "").replace("_ratio_", " e").replace("identity", "id")


def plot_search_generations(history: list[dict], path: str | Path | None = None):
    """Evolutionary search: every candidate's top-1 per generation (dots), the generation's best and mean, and the
    best found so far."""
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    gens = [rec["epoch"] + 1 for rec in history]
    for g, rec in zip(gens, history):
        ax.plot([g] * len(rec["accs"]), rec["accs"], ".", color="#9ab", ms=4, alpha=0.7)
    ax.plot(gens, [rec["best"] for rec in history], "-o", ms=3, label="generation best")
    ax.plot(gens, [rec["mean"] for rec in history], "-s", ms=3, label="generation mean")
    ax.plot(gens, [rec["top1_so_far"] for rec in history], "--", color="black", label="best so far")
    ax.set_xlabel("generation")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("search-val top-1 (%)")
    ax.set_title("evolutionary search: candidate accuracy per generation", fontsize=9)
    ax.legend(fontsize=7)
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig
