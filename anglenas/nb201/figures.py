"""NB201 figures (matplotlib object API): Kendall tau along supernet training, angle vs ground-truth accuracy."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from anglenas.nb201.metrics import kendall_tau

ORIGINAL_ANGLE_TAU = {"cifar10": 0.575, "cifar100": 0.604, "ImageNet16-120": 0.545}
"""The original's final angle tau, mean of 10 seeds (``corr_data/rebn_*_all_diff_seed_tau_dict.tau``): the target."""


def plot_tau_per_epoch(per_epoch: dict[str, dict[str, dict]], ground_truth: str, path: str | Path | None = None):
    """tau (mean +- std over seeds) of each weight metric against the ground truth, per training epoch."""
    fig = Figure(figsize=(5.2, 3.4), layout="constrained")
    ax = fig.subplots()
    for metric, by_epoch in per_epoch.items():
        epochs = sorted(by_epoch, key=int)
        mean = np.array([by_epoch[e]["mean"] for e in epochs])
        std = np.array([by_epoch[e]["std"] for e in epochs])
        x = np.array([int(e) for e in epochs])
        ax.plot(x, mean, "o-", label=metric, ms=4)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    if ground_truth in ORIGINAL_ANGLE_TAU:
        ax.axhline(ORIGINAL_ANGLE_TAU[ground_truth], color="grey", ls="--", lw=1,
                   label=f"original angle ({ORIGINAL_ANGLE_TAU[ground_truth]})")
    ax.set_xlabel("supernet epoch")
    ax.set_ylabel(f"Kendall tau vs {ground_truth} test acc")
    ax.set_title("Ranking quality along supernet training (all 15,625 archs)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig


def plot_angle_vs_accuracy(angles: np.ndarray, accuracy: np.ndarray, ground_truth: str,
                           path: str | Path | None = None):
    """Scatter of every architecture's angle against its ground-truth accuracy (log-density hexbin)."""
    fig = Figure(figsize=(5.2, 3.8), layout="constrained")
    ax = fig.subplots()
    image = ax.hexbin(angles, accuracy, gridsize=60, bins="log", mincnt=1, cmap="viridis")
    fig.colorbar(image, ax=ax, label="architectures (log)")
    ax.set_xlabel("angle between initial and trained weights (rad)")
    ax.set_ylabel(f"{ground_truth} test accuracy (%)")
    ax.set_title(f"{len(angles)} NB201 architectures, Kendall tau = {kendall_tau(angles, accuracy):.3f}", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig
