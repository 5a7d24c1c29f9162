"""PDARTS on CIFAR-10 (upstream chenxin061/pdarts ``train_search.py``, spec §9.2).

Stages of a growing network over a shrinking op set. Each stage trains a fresh search network whose edges hold
the switched-on ops, ``eps_no_arch`` epochs of weights only, then weights and alphas alternately (first order),
with dropout on the skip-connects decaying over the stage; at its end it switches off the ``num_to_drop`` weakest
ops of every edge. After the last stage (which removes ``none`` first), each node keeps its 2 strongest incoming
edges, and the skip-connect restriction loop gives one genotype for each cap of 8..0 skip-connects in the normal
cell.

With ``--operations_path`` (the ABS variant): one stage of 5 + 12 = 17 cells starting from the file's ops,
dropout 0.7, dropping down to 1 op per edge. Without: upstream's 3 stages (5, 11, 17 cells; 8 -> 5 -> 3 -> 1 ops).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from anglenas.checkpoint import atomic_write_text, open_run, run_settings, save_checkpoint
from anglenas.config import field
from anglenas.errors import UserError
from anglenas.log import RunLogger
from anglenas.searchers.darts.architect import Architect
from anglenas.searchers.darts.search import alpha_record, log_alphas, write_results
from anglenas.searchers.darts.searchdata import CellSearchConfig, SearchData, cosine_lr, read_edge_ops, train_epoch
from anglenas.searchers.registry import register_searcher
from anglenas.spaces.darts.genotypes import Genotype, genotype_to_json
from anglenas.spaces.darts.model_search import NODE_OFFSETS, NUM_EDGES, SKIP, STEPS, SearchNetwork
from anglenas.spaces.darts.ops import PRIMITIVES
from anglenas.train.dist import init_distributed
from anglenas.train.supernet import autocast_context, evaluate

CHECKPOINT = "checkpoint.pt"
RESUMABLE = {"save", "device", "threads", "demo", "tmp_data_dir", "eval_limit"}
Switches = list[list[bool]]


@dataclass
class PdartsConfig(CellSearchConfig):
    """PDARTS search (defaults: upstream's CIFAR-10 settings, spec §9.2)."""

    tmp_data_dir: str = field("", "CIFAR-10: the folder holding cifar-10-batches-py/, or the cifar10-jpg tarball")
    operations_path: str = field("", "operations file of the darts space (JSON or the original pickle): one "
                                     "stage from its ops; empty: upstream's 3-stage schedule from all 8 ops")
    save: str = field("runs/pdarts-search", "run folder: genotype.json, checkpoint, log, figures, TensorBoard")
    batch_size: int = field(96, "batch size (of each half)")
    learning_rate: float = field(0.025, "initial weight learning rate (cosine schedule per stage)")
    learning_rate_min: float = field(0.0, "final weight learning rate")
    epochs: int = field(25, "epochs per stage")
    layers: int = field(5, "cells of the first stage (before --add_layers)")
    grad_clip: float = field(5.0, "gradient-norm clip of the weights and of the alphas")
    arch_learning_rate: float = field(6e-4, "Adam learning rate of the alphas")
    eps_no_arch: int = field(10, "first epochs of each stage that train the weights only")
    add_layers: str = field("", "cells added to --layers in each stage, comma-separated "
                                "(default: 0,6,12; 12 with an operations file)")
    add_width: str = field("", "channels added to --init_channels in each stage, comma-separated (default: 0s)")
    dropout_rate: str = field("", "skip-connect dropout of each stage, comma-separated (default: 0.1,0.4,0.7 "
                                  "as upstream's README for CIFAR-10; 0.7 with an operations file)")
    num_to_drop: str = field("", "ops dropped per edge at the end of each stage, comma-separated; the number of "
                                 "stages (default: 3,2,2; ops per edge - 1 with an operations file)")
    scale_factor: float = field(0.2, "decay of the skip dropout after eps_no_arch: rate * exp(-scale * (e - eps))")
    max_skip: int = field(2, "skip-connects allowed in the normal cell of genotype.json (8: no restriction); the "
                             "genotypes for every cap 8..0 go to skip_restricted.json")

DEMO = dict(dataset="embedded", threads=1, init_channels=4, layers=2, batch_size=8, epochs=2, eps_no_arch=1,
            steps_per_epoch=2, eval_limit=32, save="runs/pdarts-search-demo")
"""``--demo``: one stage (with an operations file) of 3 cells at C=4, 2 epochs of 2 steps (the first weights
only), batch 8, on the embedded mini CIFAR-10. Without an operations file its 3 stages get 3 cells each."""


@dataclass(frozen=True)
class Schedule:
    add_layers: list[int]
    add_width: list[int]
    dropout: list[float]
    num_to_drop: list[int]


def _numbers(text: str, name: str, cast) -> list | None:
    if not text.strip():
        return None
    try:
        return [cast(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise UserError(f"--{name} must be a comma-separated list of numbers, got {text!r}") from None


def build_schedule(cfg: PdartsConfig, ops_per_edge: int, from_file: bool) -> Schedule:
    """The stage lists from the flags, defaults filled in; :class:`UserError` on inconsistent lengths."""
    drop = _numbers(cfg.num_to_drop, "num_to_drop", int) or ([ops_per_edge - 1] if from_file else [3, 2, 2])
    stages = len(drop)
    default_layers = [12] if from_file and stages == 1 else [0, 6, 12] if stages == 3 else [0] * stages
    default_drop = [0.7] if from_file and stages == 1 else [0.1, 0.4, 0.7] if stages == 3 else [0.0] * stages
    if cfg.demo and not cfg.add_layers.strip():
        default_layers = [1] * stages
    lists = {"add_layers": _numbers(cfg.add_layers, "add_layers", int) or default_layers,
             "add_width": _numbers(cfg.add_width, "add_width", int) or [0] * stages,
             "dropout_rate": _numbers(cfg.dropout_rate, "dropout_rate", float) or default_drop}
    for name, values in lists.items():
        if len(values) != stages:
            raise UserError(f"--{name} has {len(values)} values but there are {stages} stages (--num_to_drop "
                            f"{','.join(map(str, drop))}); give one value per stage")
    if any(d < 1 for d in drop) or sum(drop) != ops_per_edge - 1:
        raise UserError(f"--num_to_drop {','.join(map(str, drop))} removes {sum(drop)} ops per edge but edges hold "
                        f"{ops_per_edge}; the stages must leave exactly 1 op per edge (drop {ops_per_edge - 1} in all)")
    return Schedule(lists["add_layers"], lists["add_width"], lists["dropout_rate"], drop)


def skip_dropout_rate(epoch: int, epochs: int, eps_no_arch: int, rate: float, scale: float) -> float:
    """Upstream's schedule: rate (E - e - 1) / E while weights-only, then rate exp(-scale (e - eps_no_arch))."""
    if epoch < eps_no_arch:
        return rate * (epochs - epoch - 1) / epochs
    return rate * math.exp(-(epoch - eps_no_arch) * scale)


# -- the switch logic of upstream's end of stage (pure functions on 14 x 8 switches and 14 x k probabilities) ----

def switches_from_ops(edge_ops: Sequence[Sequence[int]]) -> Switches:
    return [[op in edge for op in range(len(PRIMITIVES))] for edge in edge_ops]


def switched_on(switches: Switches) -> list[list[int]]:
    """The primitive indices on each edge, in index order (the column order of that stage's alphas)."""
    return [[op for op, on in enumerate(edge) if on] for edge in switches]


def min_k(weights: Sequence[float], k: int) -> list[int]:
    """Positions of the k smallest weights (ties: the lower position)."""
    w = np.array(weights, dtype=float)
    out = []
    for _ in range(k):
        i = int(np.argmin(w))
        out.append(i)
        w[i] = np.inf
    return out


def min_k_no_zero(weights: Sequence[float], edge_ops: Sequence[int], k: int) -> list[int]:
    """Like :func:`min_k`, but ``none`` (when on the edge, at position 0) is dropped first."""
    if edge_ops and edge_ops[0] == 0:
        return [0] + [i + 1 for i in min_k(weights[1:], k - 1)]
    return min_k(weights, k)


def drop_ops(switches: Switches, probs: np.ndarray, k: int, none_first: bool) -> Switches:
    """Switch off the k weakest ops of every edge (``none`` first when ``none_first``)."""
    out = copy.deepcopy(switches)
    for e, ops in enumerate(switched_on(switches)):
        drop = min_k_no_zero(probs[e], ops, k) if none_first else min_k(probs[e], k)
        for i in drop:
            out[e][ops[i]] = False
    return out


def keep_two_edges(switches: Switches, edge_strength: Sequence[float]) -> Switches:
    """Keep, per node, the 2 incoming edges of largest strength (node 0 keeps both); switch off the rest."""
    keep = {0, 1}
    for node in range(1, STEPS):
        offset, n = NODE_OFFSETS[node], node + 2
        ranked = sorted(range(n), key=lambda s: edge_strength[offset + s])
        keep.update({offset + ranked[-1], offset + ranked[-2]})
    return [edge if e in keep else [False] * len(edge) for e, edge in enumerate(switches)]


def edge_strength(probs: np.ndarray, switches_before: Switches) -> np.ndarray:
    """Per edge the largest probability, ``none``'s zeroed where the edge held it (modifies nothing)."""
    p = np.array(probs, dtype=float)
    for e, edge in enumerate(switches_before):
        if edge[0]:
            p[e][0] = 0.0
    return p


def parse_switches(switches: Switches) -> list[tuple[str, int]]:
    """(op, input state) of every switched-on op, edge by edge."""
    gene = []
    for node in range(STEPS):
        for s in range(node + 2):
            gene += [(PRIMITIVES[op], s) for op in switched_on(switches)[NODE_OFFSETS[node] + s]]
    return gene


def skip_count(switches: Switches) -> int:
    return sum(edge[SKIP] for edge in switches)


def restrict_skips(switches: Switches, switches_before: Switches, probs: np.ndarray, max_skip: int, k: int
                   ) -> tuple[Switches, np.ndarray]:
    """Upstream's skip-connect restriction: while the cell has more than ``max_skip`` skip-connects, zero the
    weakest remaining skip probability, re-derive 1 op per edge (``k`` dropped from ``switches_before``, ``none``
    first) and the 2 edges per node. ``probs`` holds ``switches_before``'s columns with ``none`` zeroed.

    Fix: upstream loops forever when the weakest skip cannot go (an edge of [none, skip] keeps skip, since
    ``none`` is dropped first); here only skips whose probability is still above 0 are candidates, and the loop
    stops when none is left."""
    probs = np.array(probs, dtype=float)
    while skip_count(switches) > max_skip:
        candidates = []
        for e in range(NUM_EDGES):
            if switches[e][SKIP]:
                column = switched_on(switches_before)[e].index(SKIP)
                if probs[e][column] > 0:
                    candidates.append((probs[e][column], e, column))
        if not candidates:
            break
        _, e, column = min(candidates)
        probs[e][column] = 0.0
        one_op = drop_ops(switches_before, probs, k, none_first=True)
        switches = keep_two_edges(one_op, probs.max(axis=1))
    return switches, probs


def final_genotypes(probs_normal: np.ndarray, probs_reduce: np.ndarray, before_normal: Switches,
                    before_reduce: Switches, k: int) -> dict[int, Genotype]:
    """The genotype for each skip cap 8..0 after the last stage (k ops dropped per edge, ``none`` first)."""
    concat = list(range(2, 2 + STEPS))
    cells = {}
    for kind, probs, before in (("normal", probs_normal, before_normal), ("reduce", probs_reduce, before_reduce)):
        strength = edge_strength(probs, before)
        cells[kind] = (keep_two_edges(drop_ops(before, probs, k, none_first=True), strength.max(axis=1)), strength)
    reduce = parse_switches(cells["reduce"][0])
    switches, probs = cells["normal"]
    out = {}
    for cap in range(8, -1, -1):
        switches, probs = restrict_skips(switches, before_normal, probs, cap, k)
        out[cap] = Genotype(parse_switches(switches), concat, reduce, concat)
    return out


# -- the search ---------------------------------------------------------------------------------------------------

@register_searcher("pdarts", PdartsConfig, "relaxed", "darts", description="PDARTS: progressive DARTS (CIFAR-10)")
def run_pdarts(cfg: PdartsConfig, max_epochs: int | None = None) -> Genotype | None:
    """Search; returns the genotype (None when stopped after ``max_epochs`` epochs in all, to simulate a kill)."""
    _, device = init_distributed(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    save = Path(cfg.save)
    amp = cfg.amp and device.type == "cuda"
    if not 0 <= cfg.eps_no_arch <= cfg.epochs:
        raise UserError(f"--eps_no_arch must lie in 0..--epochs ({cfg.epochs}), got {cfg.eps_no_arch}")
    edge_ops = read_edge_ops(cfg.operations_path)
    schedule = build_schedule(cfg, len(edge_ops[0]), bool(cfg.operations_path))
    torch.manual_seed(cfg.seed)
    data = SearchData(cfg.dataset, cfg.tmp_data_dir, cfg.train_portion, cfg.batch_size, cfg.seed, device)
    logger = RunLogger(save)  # after the inputs are checked: bad input leaves no run folder behind
    spe = min(data.steps_per_epoch, cfg.steps_per_epoch or data.steps_per_epoch)
    state = {"stage": 0, "epoch": 0, "normal": switches_from_ops(edge_ops), "reduce": switches_from_ops(edge_ops),
             "history": [], "model": None}
    ckpt = open_run(save / CHECKPOINT, cfg, RESUMABLE, map_location=device)
    if ckpt is not None:
        state = ckpt
        logger.info(f"resumed from {save / CHECKPOINT} at stage {state['stage'] + 1}, epoch {state['epoch']}")
    stages = len(schedule.num_to_drop)
    logger.info(f"PDARTS: {stages} stage(s) of {cfg.epochs} epochs x {spe} steps, cells "
                f"{[cfg.layers + a for a in schedule.add_layers]}, ops per edge {len(edge_ops[0])} -> 1 "
                f"({cfg.operations_path or 'full space'}), skip dropout {schedule.dropout}, on {device}")
    budget = max_epochs
    for sp in range(state["stage"], stages):
        torch.manual_seed(cfg.seed + 1000 * sp)
        ops_n, ops_r = switched_on(state["normal"]), switched_on(state["reduce"])
        model = SearchNetwork(cfg.init_channels + schedule.add_width[sp], data.num_classes,
                              cfg.layers + schedule.add_layers[sp], ops_n, skip_dropout=True,
                              reduce_ops=ops_r).to(device)
        optimizer = torch.optim.SGD(model.weights(), cfg.learning_rate, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
        architect = Architect(model, cfg.momentum, cfg.weight_decay, cfg.arch_learning_rate, cfg.arch_weight_decay,
                              grad_clip=cfg.grad_clip, autocast=lambda: autocast_context(device, amp))
        if state["model"] is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            architect.optimizer.load_state_dict(state["arch_optimizer"])
        logger.info(f"stage {sp + 1}/{stages}: {len(model.cells)} cells, C={model.C}, {len(ops_n[0])} ops per edge")
        progress = logger.progress(f"stage {sp + 1}", cfg.epochs * spe, state["epoch"] * spe)
        for epoch in range(state["epoch"], cfg.epochs):
            if budget is not None and budget <= 0:
                return None
            lr = cosine_lr(epoch, cfg.epochs, cfg.learning_rate, cfg.learning_rate_min)
            for group in optimizer.param_groups:
                group["lr"] = lr
            p = skip_dropout_rate(epoch, cfg.epochs, cfg.eps_no_arch, schedule.dropout[sp], cfg.scale_factor)
            model.set_skip_dropout(p)
            train_arch = epoch >= cfg.eps_no_arch
            metrics = train_epoch(model, architect if train_arch else None, optimizer, data,
                                  (sp * cfg.epochs + epoch) * spe, spe, lr, cfg.grad_clip, amp, progress)
            model.eval()
            val = evaluate(model, data.val_batches(cfg.batch_size, cfg.eval_limit), device, amp)
            record = alpha_record(model, epoch + 1, stage=sp + 1, lr=lr, skip_dropout=p, **metrics,
                                  val_top1=val["top1"], val_loss=val["loss"])
            state["history"].append(record)
            step = sp * cfg.epochs + epoch + 1
            for tag in ("train_loss", "train_top1", "val_top1", "val_loss", "lr", "skip_dropout"):
                logger.scalar(f"search/{tag}", record[tag], step)
            log_alphas(logger, model, step)
            logger.info(f"stage {sp + 1} epoch {epoch + 1}/{cfg.epochs}: lr {lr:.5f} skip dropout {p:.3f} "
                        f"{'weights+alphas' if train_arch else 'weights only'} | train loss "
                        f"{metrics['train_loss']:.4f} top-1 {metrics['train_top1']:.2f}% | held-out top-1 "
                        f"{val['top1']:.2f}%")
            state.update(epoch=epoch + 1, model=model.state_dict(), optimizer=optimizer.state_dict(),
                         arch_optimizer=architect.optimizer.state_dict())
            save_checkpoint({"config": run_settings(cfg, RESUMABLE), **state}, save / CHECKPOINT)
            if budget is not None:
                budget -= 1
        probs_n, probs_r = model.probabilities()
        stage_history = [r for r in state["history"] if r["stage"] == sp + 1]
        if sp < stages - 1:
            k = schedule.num_to_drop[sp]
            state.update(stage=sp + 1, epoch=0, model=None, normal=drop_ops(state["normal"], probs_n, k, False),
                         reduce=drop_ops(state["reduce"], probs_r, k, False))
            for kind in ("normal", "reduce"):
                kept = "; ".join(",".join(PRIMITIVES[o] for o in e) for e in switched_on(state[kind]))
                logger.info(f"stage {sp + 1} done: {kind} edges keep {kept}")
            save_checkpoint({"config": run_settings(cfg, RESUMABLE), **state}, save / CHECKPOINT)
            continue
        genotypes = final_genotypes(probs_n, probs_r, state["normal"], state["reduce"], schedule.num_to_drop[sp])
        previous = None
        for cap, genotype in genotypes.items():
            if genotype != previous:
                logger.info(f"at most {cap} skip-connects (normal cell): {genotype}")
            previous = genotype
        atomic_write_text(save / "skip_restricted.json", "{\n" + ",\n".join(
            f'"{cap}": {genotype_to_json(g).strip()}' for cap, g in genotypes.items()) + "\n}\n")
        cap = min(max(cfg.max_skip, 0), 8)
        write_results(save, genotypes[cap], stage_history, (ops_n, ops_r), logger,
                      {"format": "anglenas-pdarts-search", "version": 1, "method": "pdarts", "max_skip": cap,
                       "operations_path": cfg.operations_path, "last_stage_ops": {"normal": ops_n, "reduce": ops_r},
                       "final_val_top1": stage_history[-1]["val_top1"] if stage_history else None})
        logger.close()
        return genotypes[cap]
    return None
