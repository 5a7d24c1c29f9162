"""Figure of a ProxylessNAS run: every searchable site's op probabilities over the epochs."""
from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure


def site_label(model, space, group: int, site: int) -> str:
    """``layer 07`` / ``edge 2<-1`` (prefixed by the group where the supernet has several: ``reduce/edge 3``)."""
    name = space.site_name(site).replace(f"{space.site_kind} {site}", f"{space.site_kind} {site:02d}")
    return f"{model.groups[group]}/{name}" if len(model.groups) > 1 else name


def plot_layer_probabilities(history: list[dict], model, space, path: str | Path | None = None):
    """One panel per site with more than one op (of every weight group of the relaxed supernet ``model``):
    softmax(alpha) of each op against the epoch (``history[i]["probs"][group][site]``); the dashed line marks the
    end of the warm-up. Saved to ``path`` when given; returns the figure."""
    sites = [(g, s) for g, group in enumerate(model.site_ops) for s, ops in enumerate(group) if len(ops) > 1]
    epochs = [rec["epoch"] for rec in history]
    warm_end = max((rec["epoch"] for rec in history if rec["phase"] == "warmup"), default=None)
    cols = min(max(len(sites), 1), 5)
    rows = max(1, math.ceil(len(sites) / cols))
    fig = Figure(figsize=(3.0 * cols, 2.2 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (g, s) in zip(axes.flat, sites):
        for k, op in enumerate(model.site_ops[g][s]):
            ax.plot(epochs, [rec["probs"][g][s][k] for rec in history], marker=".", ms=3, lw=1,
                    label=space.op_name(op).replace("mobilenet_", ""))
        if warm_end is not None:
            ax.axvline(warm_end, color="grey", ls="--", lw=0.8)
        ax.set_title(site_label(model, space, g, s), fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.set_ylabel("probability", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, loc="upper left")
    for ax in list(axes.flat)[len(sites):]:
        ax.axis("off")
    fig.suptitle("ProxylessNAS: op probabilities softmax(alpha) per site (dashed: end of warm-up)", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
