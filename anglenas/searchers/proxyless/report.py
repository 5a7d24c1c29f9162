"""What a ProxylessNAS run reports: the per-epoch record (log line, TensorBoard scalars, history) and the
:class:`~anglenas.search_result.SearchResult` with its figure."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from anglenas.search_result import SearchResult
from anglenas.searchers.proxyless.gates import entropy, max_entropy, searchable_sites
from anglenas.searchers.proxyless.plots import plot_layer_probabilities, site_label
from anglenas.spaces.registry import get_space

FIGURE = "arch_probabilities.png"


class Run(Protocol):
    """What the report reads of a running :class:`~anglenas.searchers.proxyless.search.ProxylessSearch`."""

    cfg: Any
    state: dict
    model: Any
    space: Any
    logger: Any
    cost: Any
    save: Path

    def validate(self) -> dict[str, float]: ...


def epoch_record(search: Run, epoch: int) -> dict:
    """Validate the derived architecture, log the epoch and return its history record: losses, accuracy,
    normalised entropy, expected cost, the derived architecture (FLOPs at the paper's size) and every
    probability (``probs[group][site][k]``)."""
    cfg, acc, model = search.cfg, search.state["epoch_acc"], search.model
    paper = get_space(search.space.name)
    val = search.validate()
    probs = model.probabilities()
    arch = model.derive()
    sites = searchable_sites(model)
    ent = sum(entropy(torch.from_numpy(probs[g][s])) for g, s in sites) / max(
        1.0, sum(max_entropy(len(probs[g][s])) for g, s in sites))
    images = max(acc["images"], 1)
    rec = {"epoch": epoch + 1, "phase": "warmup" if epoch < cfg.warmup_epochs else "search",
           "train_loss": acc["loss"] / images, "train_top1": 100 * acc["correct"] / images,
           "val_top1": val["top1"], "val_loss": val["loss"],
           "arch_loss": acc["arch_loss"] / acc["arch_n"] if acc["arch_n"] else None,
           "expected_cost": acc["expected"], "entropy": ent, "arch": paper.arch_to_json(arch),
           "arch_flops_m": paper.arch_cost(arch)[0] / 1e6, "probs": [[p.tolist() for p in group] for group in probs]}
    log = search.logger
    for tag in ("train_loss", "train_top1", "val_top1", "entropy", "arch_flops_m"):
        log.scalar(f"proxyless/{tag}", rec[tag], epoch + 1)
    if rec["expected_cost"] is not None:
        log.scalar("proxyless/expected_cost", rec["expected_cost"], epoch + 1)
    for g, s in sites:
        for k, op in enumerate(model.site_ops[g][s]):
            log.scalar(f"arch_prob/{site_label(model, search.space, g, s)}/{paper.op_name(op)}", float(probs[g][s][k]),
                       epoch + 1)
    log.info(f"epoch {epoch + 1} ({rec['phase']}): train loss {rec['train_loss']:.3f} top1 "
             f"{rec['train_top1']:.1f}%, argmax arch val top1 {val['top1']:.1f}%, {rec['arch_flops_m']:.1f}M FLOPs, "
             f"normalised entropy {ent:.4f}: {paper.format_arch(arch)}")
    return rec


def search_result(search: Run) -> SearchResult:
    """The derived architecture with the log-probability of its most probable ops, the chosen probabilities,
    the latency of a user table, and the run's history; writes the probability figure."""
    model, state, cfg = search.model, search.state, search.cfg
    paper = get_space(search.space.name)
    arch = model.derive()
    probs = model.probabilities()
    picks = [[int(np.argmax(p)) for p in group] for group in probs]
    chosen = [[float(p[k]) for p, k in zip(group, row)] for group, row in zip(probs, picks)]
    log_prob = sum(math.log(p) for row in chosen for p in row)
    details = {"layer_probs": chosen[0] if len(chosen) == 1 else chosen, "log_prob": log_prob}
    if search.cost is not None and search.cost.name != "flops":
        details["latency"] = search.cost.arch_cost(picks)
    plot_layer_probabilities(state["history"], model, search.space, search.save / FIGURE)
    search.logger.info(f"learned architecture: {paper.format_arch(arch)} (log-probability {log_prob:.3f}); figure "
                       f"{search.save / FIGURE}")
    return SearchResult(
        searcher="proxylessnas", space=paper.name, archs=[arch], scores=[log_prob],
        score_name="log-probability of the most probable op of every site under softmax(alpha)",
        operations=search.ops, arch_details=[details],
        cost={"device": str(search.device), "epochs": cfg.warmup_epochs + cfg.n_epochs,
              "weight_steps": state["step"], "arch_steps": state["arch_steps"]},
        details={"target_hardware": cfg.target_hardware, "reference": search.reference,
                 "grad_binary_mode": cfg.grad_binary_mode, "epochs": state["history"]})
