"""Figures of a DARTS / PDARTS search: the alphas of every edge over epochs, and a genotype as a cell graph
(matplotlib only; no graphviz binary)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.ticker
from matplotlib.figure import Figure

from anglenas.spaces.darts.genotypes import Genotype
from anglenas.spaces.darts.model_search import NODE_OFFSETS, STEPS
from anglenas.spaces.darts.ops import PRIMITIVES

COLORS = {name: matplotlib.colormaps["tab10"](i) for i, name in enumerate(PRIMITIVES)}


def plot_alphas(history: Sequence[dict], normal_ops: Sequence[Sequence[int]], reduce_ops: Sequence[Sequence[int]],
                path: str | Path | None = None) -> Figure:
    """Softmax weight of each op of each edge against the epoch: rows = nodes of the normal then the reduction
    cell, columns = the node's input states. ``history[i]`` holds ``epoch`` and ``alphas`` ({"normal": 14 lists,
    "reduce": 14 lists}); entry i of edge e belongs to primitive ``normal_ops[e][i]`` (``reduce_ops`` for the
    reduction cell)."""
    epochs = [rec["epoch"] for rec in history]
    fig = Figure(figsize=(13, 16))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.06, top=0.95, hspace=0.6, wspace=0.15)
    axes = fig.subplots(2 * STEPS, STEPS + 1, squeeze=False, sharey=True)
    for row, (kind, node) in enumerate((k, n) for k in ("normal", "reduce") for n in range(STEPS)):
        edge_ops = normal_ops if kind == "normal" else reduce_ops
        for col in range(STEPS + 1):
            ax = axes[row, col]
            if col >= node + 2:
                ax.axis("off")
                continue
            edge = NODE_OFFSETS[node] + col
            for i, op in enumerate(edge_ops[edge]):
                ax.plot(epochs, [rec["alphas"][kind][edge][i] for rec in history], marker=".",
                        color=COLORS[PRIMITIVES[op]], label=PRIMITIVES[op])
            ax.set_title(f"{kind} edge {edge}: node {node} <- state {col}", fontsize=8)
            ax.set_xlabel("epoch", fontsize=7)
            ax.set_ylabel("softmax(alpha)", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    handles = [matplotlib.lines.Line2D([], [], color=COLORS[n], label=n) for n in PRIMITIVES]
    fig.legend(handles=handles, loc="lower center", ncols=len(PRIMITIVES), fontsize=8)
    fig.suptitle("architecture weights (softmax of alpha) of every edge over the search")
    if path is not None:
        fig.savefig(path, dpi=80)
    return fig


def plot_genotype(genotype: Genotype, path: str | Path | None = None, title: str = "") -> Figure:
    """The normal and reduction cells: inputs c_{k-2}, c_{k-1} on the left, nodes 0..3, output c_k on the right;
    each edge labelled with its op."""
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    for ax, kind in zip(fig.subplots(1, 2), ("normal", "reduce")):
        edges, concat = getattr(genotype, kind), getattr(genotype, f"{kind}_concat")
        steps = len(edges) // 2
        pos = {0: (0.0, 0.75), 1: (0.0, 0.25)}
        for node in range(steps):
            pos[node + 2] = (0.3 + 0.4 * node / max(steps - 1, 1), 0.9 - 0.8 * node / max(steps - 1, 1))
        out = (1.0, 0.5)
        for i, (op, src) in enumerate(edges):
            dst = i // 2 + 2
            (x0, y0), (x1, y1) = pos[src], pos[dst]
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="->", color=COLORS[op], lw=1.6, shrinkA=14, shrinkB=14,
                                        connectionstyle=f"arc3,rad={0.15 if i % 2 else -0.15}"))
            t = 0.55 if i % 2 else 0.45
            ax.text(x0 + t * (x1 - x0), y0 + t * (y1 - y0), op, fontsize=7, color=COLORS[op], ha="center",
                    va="center", bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
        for state in concat:
            ax.annotate("", xy=out, xytext=pos[state],
                        arrowprops=dict(arrowstyle="->", color="#999999", lw=0.8, ls="--", shrinkA=14, shrinkB=14))
        labels = {0: "c_{k-2}", 1: "c_{k-1}", **{n + 2: str(n) for n in range(steps)}}
        for state, (x, y) in pos.items():
            color = "#a6cee3" if state < 2 else "#fdbf6f"
            ax.text(x, y, labels[state], ha="center", va="center", fontsize=10,
                    bbox=dict(boxstyle="round,pad=0.4", fc=color, ec="black"))
        ax.text(*out, "c_{k}", ha="center", va="center", fontsize=10,
                bbox=dict(boxstyle="round,pad=0.4", fc="#b2df8a", ec="black"))
        ax.set_xlim(-0.1, 1.1)
        ax.set_ylim(0.0, 1.0)
        ax.axis("off")
        ax.set_title(f"{kind} cell")
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=90)
    return fig
