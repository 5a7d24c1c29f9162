"""Stand-alone training of NAS-Bench-201 cells and the paper's stand-alone angle experiment (the paper's Fig. 4; the
original's ``train_standalone_models.py`` / ``get_standalone_ranks.py``).

:func:`train_cell` trains :class:`~anglenas.spaces.nb201.network.NB201Network` of one cell from scratch (by default
NB201's own 200-epoch recipe: SGD Nesterov, momentum 0.9, lr 0.1 cosine to 0, weight decay 5e-4 on every
parameter, batch 256, crop + flip) on the whole training set, evaluates it on the test set, and writes into its
folder ``weights-init.pt`` (the true initialisation), ``weights-final.pt``, ``checkpoint.pt`` (resumable after
every epoch; the batch of every step is a function of (seed, step), so a resumed run ends with the weights of
an uninterrupted one) and ``summary.json`` (reached top-1 next to the benchmark's, and the angle between the
initial and final weights).

:func:`run_standalone_tau` trains the original's 50 cells, indices 0, 200, ..., 9800 of NB201's
``Structure.gen_all`` enumeration, and ranks them by that angle.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

from anglenas.checkpoint import (
    atomic_write_text,
    check_same_settings,
    check_writable,
    load_checkpoint,
    run_settings,
    save_checkpoint,
)
from anglenas.config import RuntimeConfig, field, override, to_yaml
from anglenas.data.normalize import CIFAR_NORMALIZE
from anglenas.data.sources import resize_images, to_tensor_nchw
from anglenas.data.streams import TensorStream, tensor_eval_batches
from anglenas.errors import UserError
from anglenas.log import RunLogger
from anglenas.nb201.api import Benchmark
from anglenas.nb201.data import DATASETS, GROUND_TRUTH, IMAGENET16_NORMALIZE, load_sets
from anglenas.nb201.metrics import kendall_tau
from anglenas.runtime import pick_device, use_threads
from anglenas.spaces.nb201 import cells as space
from anglenas.spaces.nb201.cells import CONV1, CONV3, NONE, PATHS, POOL, Cell, path_edges
from anglenas.spaces.nb201.network import NB201Network, cell_cost
from anglenas.spaces.nb201.supernet import upgrade_keys
from anglenas.train.supernet import autocast_context, evaluate

PAPER_TAU = {"cifar10": 0.833, "cifar100": 0.822, "ImageNet16-120": 0.825}
"""Kendall tau of angle vs ground truth over the 50 stand-alone cells in the paper (the original's ``visualize.py``)."""
ORIGINAL_INDICES = tuple(range(0, 10000, 200))
"""The original's 50 cells: positions in NB201's ``Structure.gen_all`` order (:func:`space.all_cells`)."""
INIT, FINAL, CHECKPOINT, SUMMARY = "weights-init.pt", "weights-final.pt", "checkpoint.pt", "summary.json"
RESUMABLE = {"save", "device", "threads", "data_dir", "benchmark", "demo", "cpu", "cells", "eval_batch_size", "arch",
             "index"}
"""Settings that may change when a run is resumed (the cell itself is checked on its own)."""


@dataclass
class StandaloneConfig(RuntimeConfig):
    """Training one NB201 cell from scratch; the defaults are NB201's 200-epoch recipe at NB201's size."""

    dataset: str = field("cifar10-jpg", "training data", choices=DATASETS)
    data_dir: str = field("", "cifar10-jpg: the JPEG tarball; cifar10 / cifar100: the python-pickle folder; "
                              "ImageNet16-120: the folder of train_data_batch_* and val_data")
    benchmark: str = field("", "ground truth: official NB201 / NATS-Bench file or CSV (default: the shipped table)")
    save: str = override("runs/nb201-standalone")
    amp: bool = override(True)
    channels: int = field(16, "C, the width of the first stage (NB201: 16)", low=1)
    cells_per_stage: int = field(5, "N, cells per stage (NB201: 5)", low=1)
    resolution: int | None = field(None, "input side in pixels (default: the dataset's, 32 or 16)", low=4)
    train_limit: int = field(0, "train on a fixed random subset of this many training images (0: all)", low=0)
    test_limit: int = field(0, "test on a fixed random subset of this many test images (0: all)", low=0)
    epochs: int = field(200, "training epochs", low=1)
    batch_size: int = field(256, "batch size", low=1)
    lr: float = field(0.1, "initial learning rate", low=0)
    min_lr: float = field(0.0, "final learning rate of the cosine schedule", low=0)
    momentum: float = field(0.9, "SGD momentum", low=0, high=1)
    nesterov: bool = field(True, "Nesterov momentum")
    weight_decay: float = field(5e-4, "weight decay (on every parameter, as NB201)", low=0)
    eval_batch_size: int = field(500, "test batch size", low=1)


@dataclass
class TrainArchConfig(StandaloneConfig):
    """``nas-bench-201/train_arch.py``: one cell given by arch string or benchmark index."""

    arch: str = field("", "NB201 arch string |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")
    index: int | None = field(None, "NB201 benchmark index (instead of --arch)", low=0, high=space.NUM_ARCHS - 1)


@dataclass
class StandaloneTauConfig(StandaloneConfig):
    """The stand-alone angle experiment; the defaults are the paper's CIFAR-10 settings
    (``SPOS_standalone_cifar10.config``)."""

    save: str = override("runs/nb201-standalone-tau")
    epochs: int = override(100)
    batch_size: int = override(512)
    lr: float = override(0.25)
    min_lr: float = override(0.001)
    nesterov: bool = override(False)
    cells: str = field("", "comma-separated original indices (default: all 50, 0, 200, ..., 9800)")
    cpu: bool = field(False, "the CPU preset: a small network and a short schedule on a CIFAR-10 subset, "
                             "a few minutes a cell (the script's CPU preset)")


# -- data -----------------------------------------------------------------------------------------------------------
class StandaloneData:
    """Training and test images of one dataset on ``device`` (uint8 NCHW): NB201's ``cifar10`` run trains on all
    50k training images and tests on the 10k test images; CIFAR-100 / ImageNet16-120 test on the whole test set."""

    def __init__(self, cfg: StandaloneConfig, device: torch.device) -> None:
        sets = load_sets(cfg.dataset, cfg.data_dir)
        train, test = sets["train"], sets["test"]
        if cfg.train_limit and cfg.train_limit < len(train):
            keep = np.random.default_rng([cfg.seed, 0]).permutation(len(train))[:cfg.train_limit]
            train = train.subset(np.sort(keep))
        if cfg.test_limit and cfg.test_limit < len(test):
            keep = np.random.default_rng([cfg.seed, 1]).permutation(len(test))[:cfg.test_limit]
            test = test.subset(np.sort(keep))
        self.num_classes = len(train.classes)
        self.normalize = IMAGENET16_NORMALIZE if cfg.dataset == "ImageNet16-120" else CIFAR_NORMALIZE
        self.input_size = cfg.resolution or train.images.shape[1]
        self.pad = 2 if self.input_size <= 16 else 4
        self.train_x = resize_images(to_tensor_nchw(train.images, device), self.input_size)
        self.test_x = resize_images(to_tensor_nchw(test.images, device), self.input_size)
        self.train_y = torch.from_numpy(train.labels).to(device)
        self.test_y = torch.from_numpy(test.labels).to(device)

    def train_stream(self, batch_size: int, seed: int) -> TensorStream:
        if len(self.train_y) < batch_size:
            raise UserError(f"the training set has {len(self.train_y)} images, fewer than --batch_size {batch_size}")
        return TensorStream(self.train_x, self.train_y, batch_size, seed, self.normalize, pad=self.pad)

    def test_batches(self, batch_size: int):
        return tensor_eval_batches(self.test_x, self.test_y, batch_size, self.normalize)


# -- the angle of a stand-alone network -----------------------------------------------------------------------------
def vector_entries(net: NB201Network) -> list[str | int]:
    """The NB201 weight vector V (the original's ``get_arch_angle``) of ``net`` as a list of state-dict names, an int C
    standing for the constant [C, 3, 3] tensor of 1/9 of an average pooling: the fixed weights (lastact BN, classifier,
    stem, reduction blocks), then path-major, for each input-to-output path and each cell, the conv weights along the
    path (skip adds nothing; a ``none`` edge drops the path of that cell)."""
    names = {id(p): n for n, p in net.named_parameters()}
    entries: list[str | int] = [names[id(p)] for p in net.fixed_weights()]
    layer_of = {id(m): i for i, m in enumerate(net.layers)}
    for path in PATHS:
        edges = path_edges(path)
        for cell in net.cells:
            ops = [cell.cell[e] for e in edges]
            if NONE in ops:
                continue
            for e, op in zip(edges, ops):
                if op in (CONV1, CONV3):
                    entries.append(f"layers.{layer_of[id(cell)]}.edges.{e}.op.1.weight")
                elif op == POOL:
                    entries.append(cell.channels)
    return entries


def arch_vector(entries: list[str | int], state: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """V(W, a): the concatenation of ``entries`` taken from ``state`` (float64, on the CPU)."""
    parts = [torch.full((e * 9,), 1.0 / 9.0, dtype=torch.float64) if isinstance(e, int)
             else state[e].detach().reshape(-1).double().cpu() for e in entries]
    return torch.cat(parts)


def standalone_angle(net: NB201Network, init: Mapping[str, torch.Tensor], final: Mapping[str, torch.Tensor]) -> float:
    """The angle (radians) between V(init) and V(final) of ``net``'s cell."""
    entries = vector_entries(net)
    a, b = arch_vector(entries, init), arch_vector(entries, final)
    cos = torch.dot(a, b) / (a.norm() * b.norm())
    return float(torch.arccos(cos.clamp(-1.0, 1.0)))


# -- training one cell ------------------------------------------------------------------------------------------------
def cosine_lr(step: int, total: int, lr: float, min_lr: float) -> float:
    """Cosine annealing from ``lr`` to ``min_lr`` over ``total`` steps (per step, as NB201's scheduler)."""
    return min_lr + (lr - min_lr) * (1.0 + math.cos(math.pi * min(step, total) / total)) / 2.0


def cell_of(cfg_arch: str, index: int | None, bench: Benchmark) -> tuple[Cell, int]:
    """(cell, benchmark index) of ``--arch STR`` or ``--index N`` (exactly one)."""
    if bool(cfg_arch) == (index is not None):
        raise UserError("give exactly one of --arch STRING or --index N")
    index = bench.index_of(cfg_arch or index)
    return tuple(int(op) for op in bench.cells[index]), index


def _open_cell_run(save: Path, cfg: StandaloneConfig, settings: dict, device: torch.device) -> dict | None:
    """The checkpoint of the run in ``save`` after checking its settings, or None for a new run."""
    if not (save / CHECKPOINT).is_file():
        save.mkdir(parents=True, exist_ok=True)
        atomic_write_text(save / "config.yaml", to_yaml(cfg))
        return None
    ckpt = load_checkpoint(save / CHECKPOINT, map_location=device)
    check_same_settings(ckpt["config"], settings, save)
    return ckpt


def train_cell(cfg: StandaloneConfig, cell: Cell, save: str | Path, data: StandaloneData, bench: Benchmark,
               device: torch.device, logger: RunLogger | None = None, stop_at: int | None = None) -> dict | None:
    """Train the network of ``cell`` per ``cfg`` into ``save`` (resuming a killed run); its summary dict.
    ``stop_at`` ends the session after that many steps in all, at a checkpoint, and returns None (for tests)."""
    save, arch = Path(save), space.to_str(cell)
    settings = {**run_settings(cfg, RESUMABLE), "arch": arch}
    ckpt = _open_cell_run(save, cfg, settings, device)
    if ckpt is not None and (save / SUMMARY).is_file() and (save / FINAL).is_file():
        return json.loads((save / SUMMARY).read_text())
    log = logger or RunLogger(save)
    torch.manual_seed(cfg.seed)
    model = NB201Network(cell, data.num_classes, cfg.channels, cfg.cells_per_stage).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    stream = data.train_stream(cfg.batch_size, cfg.seed)
    per_epoch = stream.steps_per_epoch
    total = cfg.epochs * per_epoch
    if ckpt is None:
        save_checkpoint(model.state_dict(), save / INIT)
        start = 0
    else:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start = ckpt["step"]
    log.info(f"{arch}: {cfg.epochs} epochs x {per_epoch} steps, C={cfg.channels} N={cfg.cells_per_stage} "
             f"{data.input_size}px, {len(data.train_y)} train / {len(data.test_y)} test images on {device}"
             + (f"; resuming at step {start}" if start else ""))
    progress = log.progress(f"train {save.name}", total, start=start, every=max(1, per_epoch))
    t0 = time.perf_counter()
    model.train()
    end = total if stop_at is None else min(total, stop_at)
    loss_sum, losses = torch.zeros((), device=device), 0  # read on the host once an epoch
    for step, (x, y) in enumerate(stream.batches(start, end - start), start=start):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, total, cfg.lr, cfg.min_lr)
        with autocast_context(device, cfg.amp):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum, losses = loss_sum + loss.detach(), losses + 1
        if (step + 1) % per_epoch == 0 or step + 1 in (total, end):
            mean_loss = loss_sum.item() / losses
            progress.update(losses, loss=mean_loss)
            log.scalar(f"{save.name}/train_loss", mean_loss, step + 1)
            loss_sum, losses = torch.zeros((), device=device), 0
            save_checkpoint({"config": settings, "step": step + 1, "model": model.state_dict(),
                             "optimizer": optimizer.state_dict()}, save / CHECKPOINT)
    if end < total:
        return None
    model.eval()
    result = evaluate(model, data.test_batches(cfg.eval_batch_size), device, cfg.amp)
    final = model.state_dict()
    save_checkpoint(final, save / FINAL)
    angle = standalone_angle(model, upgrade_keys(load_checkpoint(save / INIT)), final)
    index = int(bench.indices_of(np.array([cell]))[0])
    dataset = GROUND_TRUTH[cfg.dataset]
    flops, params = cell_cost(cell, data.num_classes, data.input_size, cfg.channels, cfg.cells_per_stage)
    summary = {"arch": arch, "benchmark_index": index, "dataset": cfg.dataset, "top1": result["top1"],
               "test_loss": result["loss"], "test_images": result["n"],
               "benchmark_top1": bench.accuracy(index, dataset), "benchmark_dataset": dataset,
               "benchmark_source": bench.source, "angle_init_final": angle,
               "flops_M": flops / 1e6, "params_MB": params / 1e6,
               "train_seconds_this_session": time.perf_counter() - t0,
               "config": dataclasses.asdict(cfg)}
    atomic_write_text(save / SUMMARY, json.dumps(summary, indent=2))
    log.info(f"{arch}: top-1 {result['top1']:.2f}% (benchmark, 200 epochs at C=16 N=5: "
             f"{summary['benchmark_top1']:.2f}%), angle(init, final) {angle:.4f} rad")
    return summary


# -- the 50-cell experiment -------------------------------------------------------------------------------------------
def original_cells(indices: list[int] | tuple[int, ...] = ORIGINAL_INDICES) -> np.ndarray:
    """The cells at ``indices`` of NB201's ``Structure.gen_all`` order [n, 6]."""
    cells = space.all_cells()
    bad = [i for i in indices if not 0 <= i < len(cells)]
    if bad:
        raise UserError(f"original indices {bad} are out of range 0..{len(cells) - 1}")
    return cells[list(indices)]


def parse_indices(text: str) -> list[int]:
    if not text.strip():
        return list(ORIGINAL_INDICES)
    try:
        indices = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        indices = []
    if not indices:
        raise UserError(f"--cells takes comma-separated integers like 0,200,400, got {text!r}")
    return indices


def tau_report(records: list[dict], dataset: str) -> dict:
    """Kendall tau-b of the angle against the ground truth and against the accuracy the runs reached, over all
    records and over the live ones (cells whose output is not identically zero; the dead tie at 10%)."""
    angle = np.array([r["angle_init_final"] for r in records])
    gt = np.array([r["benchmark_top1"] for r in records])
    reached = np.array([r["top1"] for r in records])
    alive = ~space.is_dead(np.array([space.parse(r["arch"]) for r in records]).reshape(-1, space.NUM_EDGES))

    def tau(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float | None:
        return kendall_tau(x[mask], y[mask]) if mask.sum() >= 2 else None

    every = np.ones(len(records), dtype=bool)
    return {"angle_vs_ground_truth": tau(angle, gt, every), "angle_vs_reached": tau(angle, reached, every),
            "reached_vs_ground_truth": tau(reached, gt, every), "live_cells": int(alive.sum()),
            "angle_vs_ground_truth_live": tau(angle, gt, alive), "angle_vs_reached_live": tau(angle, reached, alive),
            "reached_vs_ground_truth_live": tau(reached, gt, alive), "paper_angle_vs_ground_truth": PAPER_TAU[dataset]}


def plot_standalone(records: list[dict], dataset: str, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    angle = [r["angle_init_final"] for r in records]
    for ax, key, label in ((axes[0], "benchmark_top1", f"NB201 200-epoch test accuracy ({dataset}, %)"),
                           (axes[1], "top1", "accuracy reached here (%)")):
        ax.scatter(angle, [r[key] for r in records], s=14)
        ax.set_xlabel("angle(initial, final weights) (rad)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_title("angle vs ground truth")
    axes[1].set_title("angle vs reached accuracy")
    fig.suptitle(f"{len(records)} stand-alone NB201 cells")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def run_standalone_tau(cfg: StandaloneTauConfig) -> dict:
    """Train the cells of ``cfg.cells`` one after another (a finished cell is kept), then rank them by angle."""
    indices = parse_indices(cfg.cells)
    cells = original_cells(indices)
    save = Path(cfg.save)
    check_writable(save, "run folder", "--save")
    threads = use_threads(cfg.threads)
    device = pick_device(cfg.device)
    bench = Benchmark.load(cfg.benchmark or None)
    data = StandaloneData(cfg, device)
    data.train_stream(cfg.batch_size, cfg.seed)  # refuses a batch larger than the training set
    dataset = GROUND_TRUTH[cfg.dataset]
    logger = RunLogger(save)  # after the inputs are checked: none leaves a folder
    logger.info(f"{len(cells)} cells on {device}, {threads} CPU thread(s)")
    cell_cfg = StandaloneConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(StandaloneConfig)})
    records, t0 = [], time.perf_counter()
    for n, (original, cell) in enumerate(zip(indices, cells)):
        logger.info(f"cell {n + 1}/{len(cells)}: original index {original}")
        summary = train_cell(cell_cfg, tuple(int(op) for op in cell), save / f"cell-{original:05d}", data, bench,
                             device, logger)
        records.append({"original_index": original, **{k: summary[k] for k in (
            "arch", "benchmark_index", "angle_init_final", "top1", "benchmark_top1")}})
        report = {"dataset": cfg.dataset, "ground_truth": f"{dataset} 200-epoch test accuracy",
                  "cells_done": len(records), "cells_planned": len(cells), "tau": tau_report(records, dataset),
                  "cells": records, "wall_seconds_this_session": time.perf_counter() - t0,
                  "config": dataclasses.asdict(cfg)}
        atomic_write_text(save / "standalone_tau.json", json.dumps(report, indent=2))
    if len(records) >= 2:
        fig = plot_standalone(records, dataset, save / "standalone_angle.png")
        logger.figure("standalone/angle_vs_accuracy", fig, len(records))
    tau = report["tau"]
    if tau["angle_vs_ground_truth"] is not None:
        logger.info(f"{len(records)} cells: Kendall tau angle vs ground truth {tau['angle_vs_ground_truth']:.3f} "
                    f"(paper, 50 cells: {PAPER_TAU[dataset]}), angle vs reached {tau['angle_vs_reached']:.3f}, "
                    f"reached vs ground truth {tau['reached_vs_ground_truth']:.3f}")
    logger.close()
    return report


__all__ = ["ORIGINAL_INDICES", "PAPER_TAU", "StandaloneConfig", "StandaloneData", "StandaloneTauConfig",
           "TrainArchConfig", "arch_vector", "original_cells", "run_standalone_tau", "standalone_angle", "train_cell",
           "vector_entries"]
