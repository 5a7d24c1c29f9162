"""Figures of a PertNAS search: score heatmaps (TensorBoard) and, on the DARTS space, the final cell."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from anglenas.spaces.darts.genotypes import Genotype
from anglenas.spaces.darts.model_search import NUM_EDGES
from anglenas.spaces.darts.ops import PRIMITIVES


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _heatmap(table: np.ndarray, xticks: Sequence[str], yticks: Sequence[str], xlabel: str, ylabel: str,
             title: str, figsize: tuple[float, float]):
    """A diverging heatmap centred on 0; NaN cells (not scored) are blank."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    finite = table[np.isfinite(table)]
    bound = max(float(np.abs(finite).max()) if finite.size else 0.0, 1e-6)
    im = ax.imshow(np.ma.masked_invalid(table), cmap="coolwarm", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(range(len(xticks)), xticks, rotation=40, ha="right")
    ax.set_yticks(range(len(yticks)), yticks)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="accuracy change after removal (pp; lower = more important)")
    fig.tight_layout()
    return fig


def score_heatmap(table: np.ndarray, op_names: Sequence[str], site_kind: str, title: str):
    """Sites x ops heatmap of perturb-val scores (``table[site, column]``, column j is op ``op_names[j]``; NaN = not
    scored)."""
    table = np.asarray(table, dtype=float)
    return _heatmap(table, op_names, [str(s) for s in range(len(table))], "op removed", site_kind, title,
                    (max(5.0, 1.0 + 0.9 * len(op_names)), max(3.0, 1.5 + 0.32 * len(table))))


def edge_score_heatmap(rows: Sequence[dict], title: str):
    """Rounds x edges heatmap of topology scores (``rows[i]["node"]``, ``["edges"]`` and ``["scores"]``)."""
    table = np.full((max(len(rows), 1), NUM_EDGES), np.nan)
    for i, row in enumerate(rows):
        for e, s in zip(row["edges"], row["scores"]):
            table[i, e] = s
    return _heatmap(table, [str(e) for e in range(NUM_EDGES)], [f"node {row['node']}" for row in rows] or [""],
                    "edge removed", "decision", title, (9, 3.5))


def draw_cell(genotype: Genotype, title: str = "PertNAS cell (normal = reduce)"):
    """The normal cell as a graph: inputs c_{k-2}, c_{k-1}, nodes 0-3, output c_{k}; edges labelled by op."""
    plt = _pyplot()
    pos = {0: (0.0, 1.0), 1: (0.0, -1.0), 2: (1.5, 1.6), 3: (2.5, -1.2), 4: (3.5, 1.4), 5: (4.5, -0.8),
           "out": (6.0, 0.0)}
    names = {0: "c_{k-2}", 1: "c_{k-1}", 2: "0", 3: "1", 4: "2", 5: "3", "out": "c_{k}"}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    colours = plt.get_cmap("tab10")
    for i, (op, src) in enumerate(genotype.normal):
        dst = i // 2 + 2
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color=colours(PRIMITIVES.index(op) % 10), lw=1.6,
                                    shrinkA=14, shrinkB=14, connectionstyle="arc3,rad=0.12"))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.12, op, fontsize=8, ha="center",
                color=colours(PRIMITIVES.index(op) % 10))
    for node in genotype.normal_concat:
        (x0, y0), (x1, y1) = pos[node], pos["out"]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="grey", lw=0.8, ls="--", shrinkA=14, shrinkB=14))
    for key, (x, y) in pos.items():
        ax.scatter([x], [y], s=900, color="lightblue" if key in (0, 1, "out") else "wheat", edgecolor="black",
                   zorder=3)
        ax.text(x, y, f"${names[key]}$" if key in (0, 1, "out") else names[key], ha="center", va="center",
                zorder=4, fontsize=9)
    ax.set_xlim(-0.7, 6.7)
    ax.set_ylim(-2.2, 2.4)
    ax.axis("off")
    ax.set_title(title)
    fig.tight_layout()
    return fig
