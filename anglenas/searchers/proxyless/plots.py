"""Figure of a ProxylessNAS run: every searchable layer's op probabilities over the epochs."""
from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure


def plot_layer_probabilities(history: list[dict], ops: list[list[int]], space, path: str | Path | None = None):
    """One panel per layer with more than one op: softmax(alpha) of each op against the epoch; the dashed line
    marks the end of the warm-up. Saved to ``path`` when given; returns the figure."""
    layers = [i for i, site in enumerate(ops) if len(site) > 1]
    epochs = [rec["epoch"] for rec in history]
    warm_end = max((rec["epoch"] for rec in history if rec["phase"] == "warmup"), default=None)
    cols = min(max(len(layers), 1), 5)
    rows = max(1, math.ceil(len(layers) / cols))
    fig = Figure(figsize=(3.0 * cols, 2.2 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, i in zip(axes.flat, layers):
        for k, op in enumerate(ops[i]):
            ax.plot(epochs, [rec["probs"][i][k] for rec in history], marker=".", ms=3, lw=1,
                    label=space.op_name(op).replace("mobilenet_", ""))
        if warm_end is not None:
            ax.axvline(warm_end, color="grey", ls="--", lw=0.8)
        ax.set_title(f"layer {i}", fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.set_ylabel("probability", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, loc="upper left")
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    fig.suptitle("ProxylessNAS: op probabilities softmax(alpha) per layer (dashed: end of warm-up)", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
