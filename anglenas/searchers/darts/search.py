"""DARTS (quark0/darts ``cnn/train_search.py``) on CIFAR-10, on any space with a relaxed supernet.

The space is built at the data's resolution and class count, its relaxed supernet over the operations file's ops
(``--init_channels`` / ``--layers``: its width and cells; default the space's search size, upstream's C=16 and 8
cells on the DARTS space) with DARTS' softmax mixing. Every step: one architecture update on a batch of the
architecture half (first order, or second order with ``--unrolled``), then one SGD step of the weights on a batch
of the weight half. The architecture the alphas give (on the DARTS space the genotype, by DARTS' rule) is logged
after every epoch; the result is the one after the last epoch. ``SAVE/checkpoint.pt`` is written atomically after
every epoch: the same command resumes a killed run at the last finished epoch. On the DARTS space the run also
writes ``SAVE/genotype.json``, ``alphas.png`` and ``genotype.png``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from anglenas.checkpoint import open_run, run_settings, save_checkpoint
from anglenas.config import field, override
from anglenas.operations import Operations
from anglenas.search_result import SearchResult
from anglenas.searchers.darts.architect import Architect
from anglenas.searchers.darts.common import (
    CHECKPOINT,
    SCORE_NAME,
    alpha_record,
    arch_score,
    log_alphas,
    start_run,
    write_darts_files,
)
from anglenas.searchers.darts.searchdata import RESUMABLE, CellSearchConfig, epoch_lr, train_epoch
from anglenas.searchers.registry import register_searcher
from anglenas.spaces.relaxed import SoftmaxMixing
from anglenas.train.supernet import autocast_context, evaluate


@dataclass
class DartsConfig(CellSearchConfig):
    """DARTS search (defaults: upstream's CIFAR-10 settings)."""

    save: str = override("runs/darts-search")
    unrolled: bool = field(False, "second order: the unrolled weights and the finite-difference Hessian-vector "
                                  "product (DARTS paper eq. 7-8)")


DEMO = dict(dataset="embedded", threads=1, batch_size=8, epochs=2, steps_per_epoch=2, eval_limit=32,
            save="runs/darts-search-demo")
"""``--demo``: 2 epochs of 2 steps at batch 8 on the embedded mini CIFAR-10 (the space's ``search_demo`` sets
the network's size: C=4 and 3 cells on the DARTS space)."""


def run_darts(cfg: DartsConfig, operations: Operations, max_epochs: int | None = None) -> SearchResult | None:
    """DARTS in ``operations``; None when stopped by ``max_epochs`` (to simulate an interruption)."""
    run = start_run(cfg, operations)
    model = run.space.relaxed_supernet(operations.ops, channels=cfg.init_channels, depth=cfg.depth).to(run.device)
    model.set_mixing(SoftmaxMixing())
    optimizer = torch.optim.SGD(model.weights(), cfg.learning_rate, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    architect = Architect(model, cfg.momentum, cfg.weight_decay, cfg.arch_learning_rate, cfg.arch_weight_decay,
                          cfg.unrolled, autocast=lambda: autocast_context(run.device, run.amp))
    spe = min(run.data.steps_per_epoch, cfg.steps_per_epoch or run.data.steps_per_epoch)
    start, history = 0, []
    ckpt = open_run(run.save / CHECKPOINT, cfg, RESUMABLE, map_location=run.device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        architect.optimizer.load_state_dict(ckpt["arch_optimizer"])
        start, history = ckpt["epoch"], ckpt["history"]
        run.logger.info(f"resumed from {run.save / CHECKPOINT} after epoch {start}/{cfg.epochs}")
    size = f" of {model.layers} cells, C={model.C}" if run.is_darts_cell else ""
    run.logger.info(f"DARTS search ({'second' if cfg.unrolled else 'first'} order) on the {run.space.name} space: "
                    f"{type(model).__name__}{size}, "
                    f"{sum(p.numel() for p in model.weights()) / 1e6:.3f}M weights, {cfg.epochs} epochs x {spe} "
                    f"steps at batch {cfg.batch_size}")
    progress = run.logger.progress("search", cfg.epochs * spe, start * spe)
    end = cfg.epochs if max_epochs is None else min(cfg.epochs, max_epochs)
    for epoch in range(start, end):
        lr = epoch_lr(epoch, cfg.epochs, cfg.learning_rate, cfg.learning_rate_min)
        for group in optimizer.param_groups:
            group["lr"] = lr
        metrics = train_epoch(model, architect, optimizer, run.data, epoch * spe, spe, lr, cfg.grad_clip, run.amp,
                              progress)
        model.eval()
        val = evaluate(model, run.data.val_batches(cfg.batch_size, cfg.eval_limit), run.device, run.amp)
        record = alpha_record(model, run.space, epoch + 1, lr=lr, **metrics, val_top1=val["top1"],
                              val_loss=val["loss"])
        history.append(record)
        for tag in ("train_loss", "train_top1", "val_top1", "val_loss", "lr"):
            run.logger.scalar(f"search/{tag}", record[tag], epoch + 1)
        log_alphas(run.logger, model, run.space, epoch + 1)
        run.logger.info(f"epoch {epoch + 1}/{cfg.epochs}: lr {lr:.5f} train loss {metrics['train_loss']:.4f} top-1 "
                        f"{metrics['train_top1']:.2f}% | held-out top-1 {val['top1']:.2f}% | arch = {record['arch']}")
        save_checkpoint({"config": run_settings(cfg, RESUMABLE), "epoch": epoch + 1, "model": model.state_dict(),
                         "optimizer": optimizer.state_dict(), "arch_optimizer": architect.optimizer.state_dict(),
                         "history": history}, run.save / CHECKPOINT)
    if end < cfg.epochs:
        return None
    arch = model.derive()
    if run.is_darts_cell:
        write_darts_files(run, arch, history, model.site_ops)
    run.logger.info(f"architecture: {run.space.format_arch(arch)}")
    run.logger.close()
    return SearchResult(
        searcher="darts", space=operations.space.name, archs=[arch], scores=[arch_score(model, arch)],
        score_name=SCORE_NAME, operations=operations.ops,
        cost={"epochs": cfg.epochs, "steps": cfg.epochs * spe, "device": str(run.device)},
        arch_details=[{"val_top1": history[-1]["val_top1"]}],
        details={"unrolled": cfg.unrolled, "history": history})


register_searcher("darts", DartsConfig, "relaxed", "darts", presets={"demo": DEMO},
                  description="DARTS: differentiable search, first or second order (CIFAR-10)")(run_darts)
