"""The DARTS search on CIFAR-10 (upstream ``cnn/train_search.py``, spec §9.1) in the space of an operations file.

Every step: one architecture update on a batch of the architecture half (first order, or second order with
``--unrolled``), then one SGD step of the weights on a batch of the weight half. The genotype is logged after
every epoch and written to ``SAVE/genotype.json`` at the end, with ``alphas.png`` (alphas per edge over epochs) and
``genotype.png`` (the cells). ``SAVE/checkpoint.pt`` is written atomically after every epoch: the same command
resumes a killed run at the last finished epoch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from anglenas.checkpoint import atomic_write_text, open_run, run_settings, save_checkpoint
from anglenas.config import field
from anglenas.log import RunLogger
from anglenas.searchers.darts.architect import Architect
from anglenas.searchers.darts.plots import plot_alphas, plot_genotype
from anglenas.searchers.darts.searchdata import CellSearchConfig, SearchData, cosine_lr, read_edge_ops, train_epoch
from anglenas.searchers.registry import register_searcher
from anglenas.spaces.darts.genotypes import Genotype, save_genotype
from anglenas.spaces.darts.model_search import SearchNetwork
from anglenas.spaces.darts.ops import PRIMITIVES
from anglenas.train.dist import init_distributed
from anglenas.train.supernet import autocast_context, evaluate

CHECKPOINT, GENOTYPE, SUMMARY = "checkpoint.pt", "genotype.json", "summary.json"
RESUMABLE = {"save", "device", "threads", "demo", "data", "eval_limit"}


@dataclass
class DartsConfig(CellSearchConfig):
    """DARTS search (defaults: upstream's CIFAR-10 settings, spec §9.1)."""

    data: str = field("", "CIFAR-10: the folder holding cifar-10-batches-py/, or the cifar10-jpg tarball")
    operations_path: str = field("", "operations file of the darts space (JSON, or the original pickle of 14 "
                                     "lists of primitive indices); empty: the full 8-op space")
    save: str = field("runs/darts-search", "run folder: genotype.json, checkpoint, log, figures, TensorBoard")
    unrolled: bool = field(False, "second order: the unrolled weights and the finite-difference Hessian-vector "
                                  "product (DARTS paper eq. 7-8)")

DEMO = dict(dataset="embedded", threads=1, init_channels=4, layers=3, batch_size=8, epochs=2, steps_per_epoch=2,
            eval_limit=32, save="runs/darts-search-demo")
"""``--demo``: 2 epochs of 2 steps, C=4, 3 cells, batch 8, on the embedded mini CIFAR-10."""


def alpha_record(model: SearchNetwork, epoch: int, **metrics: float) -> dict:
    """One history entry: the epoch, its metrics, the softmax alphas and the genotype they give."""
    normal, reduce = model.probabilities()
    return {"epoch": epoch, **metrics, "normal": normal.round(6).tolist(), "reduce": reduce.round(6).tolist(),
            "genotype": str(model.genotype())}


def log_alphas(logger: RunLogger, model: SearchNetwork, step: int) -> None:
    """TensorBoard scalars of every alpha weight (tag ``alphas/<kind>/edge<e>/<op>``)."""
    for kind, probs, edge_ops in zip(("normal", "reduce"), model.probabilities(), (model.edge_ops, model.reduce_ops)):
        for e, ops in enumerate(edge_ops):
            for i, op in enumerate(ops):
                logger.scalar(f"alphas/{kind}/edge{e:02d}/{PRIMITIVES[op]}", float(probs[e][i]), step)


def write_results(save: Path, genotype: Genotype, history: list[dict], edge_ops: tuple[list, list],
                  logger: RunLogger, summary: dict) -> None:
    """genotype.json, the two figures (also to TensorBoard) and summary.json; ``edge_ops``: (normal, reduce)."""
    save_genotype(genotype, save / GENOTYPE)
    step = history[-1]["epoch"] if history else 0
    if history:  # PNG only: TensorBoard has every alpha as a scalar curve (alphas/...)
        plot_alphas(history, *edge_ops, save / "alphas.png")
    logger.figure("search/genotype", plot_genotype(genotype, save / "genotype.png", f"genotype found in {save}"), step)
    atomic_write_text(save / SUMMARY, json.dumps({**summary, "genotype": genotype._asdict(), "history": history},
                                                 indent=1) + "\n")
    logger.info(f"genotype = {genotype}")
    logger.info(f"wrote {save / GENOTYPE} (train it: darts-master/train.py --arch {save / GENOTYPE})")


@register_searcher("darts", DartsConfig, "relaxed", "darts", description="DARTS: differentiable search of the cell (CIFAR-10)")
def run_darts(cfg: DartsConfig, max_epochs: int | None = None) -> Genotype | None:
    """Search; returns the genotype (None when stopped by ``max_epochs``, to simulate an interruption)."""
    _, device = init_distributed(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    save = Path(cfg.save)
    amp = cfg.amp and device.type == "cuda"
    edge_ops = read_edge_ops(cfg.operations_path)
    torch.manual_seed(cfg.seed)
    data = SearchData(cfg.dataset, cfg.data, cfg.train_portion, cfg.batch_size, cfg.seed, device)
    logger = RunLogger(save)  # after the inputs are checked: bad input leaves no run folder behind
    model = SearchNetwork(cfg.init_channels, data.num_classes, cfg.layers, edge_ops).to(device)
    optimizer = torch.optim.SGD(model.weights(), cfg.learning_rate, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    architect = Architect(model, cfg.momentum, cfg.weight_decay, cfg.arch_learning_rate, cfg.arch_weight_decay,
                          cfg.unrolled, autocast=lambda: autocast_context(device, amp))
    spe = min(data.steps_per_epoch, cfg.steps_per_epoch or data.steps_per_epoch)
    start, history = 0, []
    ckpt = open_run(save / CHECKPOINT, cfg, RESUMABLE, map_location=device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        architect.optimizer.load_state_dict(ckpt["arch_optimizer"])
        start, history = ckpt["epoch"], ckpt["history"]
        logger.info(f"resumed from {save / CHECKPOINT} after epoch {start}/{cfg.epochs}")
    logger.info(f"DARTS search ({'second' if cfg.unrolled else 'first'} order): {cfg.layers} cells, C="
                f"{cfg.init_channels}, {len(edge_ops[0])} ops per edge "
                f"({cfg.operations_path or 'full space'}), {cfg.epochs} epochs x {spe} steps at batch "
                f"{cfg.batch_size}, on {device}")
    progress = logger.progress("search", cfg.epochs * spe, start * spe)
    end = cfg.epochs if max_epochs is None else min(cfg.epochs, max_epochs)
    for epoch in range(start, end):
        lr = cosine_lr(epoch, cfg.epochs, cfg.learning_rate, cfg.learning_rate_min)
        for group in optimizer.param_groups:
            group["lr"] = lr
        metrics = train_epoch(model, architect, optimizer, data, epoch * spe, spe, lr, cfg.grad_clip, amp,
                              progress)
        model.eval()
        val = evaluate(model, data.val_batches(cfg.batch_size, cfg.eval_limit), device, amp)
        record = alpha_record(model, epoch + 1, lr=lr, **metrics, val_top1=val["top1"], val_loss=val["loss"])
        history.append(record)
        for tag in ("train_loss", "train_top1", "val_top1", "val_loss", "lr"):
            logger.scalar(f"search/{tag}", record[tag], epoch + 1)
        log_alphas(logger, model, epoch + 1)
        logger.info(f"epoch {epoch + 1}/{cfg.epochs}: lr {lr:.5f} train loss {metrics['train_loss']:.4f} top-1 "
                    f"{metrics['train_top1']:.2f}% | held-out top-1 {val['top1']:.2f}% | genotype = "
                    f"{record['genotype']}")
        save_checkpoint({"config": run_settings(cfg, RESUMABLE), "epoch": epoch + 1, "model": model.state_dict(),
                         "optimizer": optimizer.state_dict(), "arch_optimizer": architect.optimizer.state_dict(),
                         "history": history}, save / CHECKPOINT)
    if end < cfg.epochs:
        return None
    genotype = model.genotype()
    write_results(save, genotype, history, (edge_ops, edge_ops), logger,
                  {"format": "anglenas-darts-search", "version": 1, "method": "darts", "unrolled": cfg.unrolled,
                   "operations_path": cfg.operations_path, "edge_ops": edge_ops,
                   "final_val_top1": history[-1]["val_top1"] if history else None})
    logger.close()
    return genotype
