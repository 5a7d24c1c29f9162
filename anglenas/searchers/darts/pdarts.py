"""PDARTS (chenxin061/pdarts ``train_search.py``) on CIFAR-10, on any space with a relaxed supernet.

Stages over a shrinking op set. Each stage trains a fresh relaxed supernet (softmax mixing, a dropout after every
skip candidate) over the ops still on, ``eps_no_arch`` epochs of weights only, then weights and architecture
alternately (first order), with the skip dropout decaying over the stage; at its end every site (per group)
switches off its ``num_to_drop`` weakest ops, ``none`` first in the last stage.

On the DARTS space the stages also grow the network (``--add_layers``: 5, 11, 17 cells upstream) and the end follows
upstream's cell rules (:func:`~anglenas.searchers.darts.switches.final_genotypes`): each node keeps its 2 strongest
incoming edges and the skip-connect restriction gives one genotype per cap of 8..0 skip-connects in the normal
cell; ``genotype.json`` is the one with at most ``--max_skip``. On another space the last stage's one op per site
is the architecture.

With ``--operations_path`` (the ABS variant): one stage (5 + 12 = 17 cells on the DARTS space) from the file's ops,
dropout 0.7, dropping down to 1 op per site. Without it on the DARTS space: upstream's 3 stages (5, 11, 17 cells;
8 -> 5 -> 3 -> 1 ops); on another space one stage from the whole space.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from anglenas.checkpoint import atomic_write_text, open_run, run_settings, save_checkpoint
from anglenas.config import field, override, range_text
from anglenas.errors import UserError
from anglenas.operations import Operations
from anglenas.search_result import SearchResult
from anglenas.searchers.darts.architect import Architect
from anglenas.searchers.darts.common import (
    CHECKPOINT,
    SCORE_NAME,
    SearchRun,
    alpha_record,
    arch_score,
    is_darts_cell,
    log_alphas,
    start_run,
    write_darts_files,
)
from anglenas.searchers.darts.searchdata import RESUMABLE, CellSearchConfig, epoch_lr, train_epoch
from anglenas.searchers.darts.switches import drop_weakest, final_genotypes, switches_from_ops
from anglenas.searchers.registry import register_searcher
from anglenas.spaces.darts.genotypes import genotype_to_json
from anglenas.spaces.relaxed import RelaxedSupernet, SoftmaxMixing
from anglenas.train.supernet import autocast_context, evaluate

PDARTS_LAYERS = 5
"""Upstream PDARTS' first-stage cells on the DARTS space (``--layers``)."""


@dataclass
class PdartsConfig(CellSearchConfig):
    """PDARTS search (defaults: upstream's CIFAR-10 settings)."""

    flag_aliases: ClassVar[dict[str, str]] = {**CellSearchConfig.flag_aliases, "tmp_data_dir": "data_dir"}
    """``--layers``: the cells of the first stage, before --add_layers (default: 5 on the DARTS space, upstream's;
    elsewhere the space's search size)."""

    save: str = override("runs/pdarts-search")
    batch_size: int = override(96)
    learning_rate_min: float = override(0.0)
    epochs: int = override(25)
    arch_learning_rate: float = override(6e-4)
    eps_no_arch: int = field(10, "first epochs of each stage that train the weights only", low=0)
    add_layers: str = field("", "DARTS space: cells added to --layers in each stage, comma-separated, each >= 0 "
                                "(default: 0,6,12; 12 with an operations file)")
    add_width: str = field("", "channels added to --init_channels in each stage, comma-separated, each >= 0 "
                               "(default: 0s)")
    dropout_rate: str = field("", "skip dropout of each stage, comma-separated, each 0 to 1 (default: 0.1,0.4,0.7 "
                                  "as upstream's README for CIFAR-10; 0.7 for a single stage)")
    num_to_drop: str = field("", "ops dropped per site at the end of each stage, comma-separated, each >= 1; the "
                                 "number of stages (default: DARTS space 3,2,2; ops per site - 1 with an operations "
                                 "file or on another space)")
    scale_factor: float = field(0.2, "decay of the skip dropout after eps_no_arch: rate * exp(-scale * (e - eps))",
                                low=0)
    max_skip: int = field(2, "DARTS space: skip-connects allowed in the normal cell of genotype.json (8: no "
                             "restriction); the genotypes for every cap 8..0 go to skip_restricted.json",
                          low=0, high=8)


DEMO = dict(dataset="embedded", threads=1, batch_size=8, epochs=2, eps_no_arch=1, steps_per_epoch=2, eval_limit=32,
            save="runs/pdarts-search-demo")
"""``--demo``: 2 epochs of 2 steps per stage (the first weights only), batch 8, on the embedded mini CIFAR-10; one
cell more per stage on the DARTS space (the space's ``search_demo`` sets the network's size with ``--space``;
``pdarts-master/train_search.py --demo``: C=4, 2 + 1 cells)."""


@dataclass(frozen=True)
class Schedule:
    add_layers: list[int]
    add_width: list[int]
    dropout: list[float]
    num_to_drop: list[int]


def _numbers(text: str, name: str, cast, low: float, high: float | None = None) -> list | None:
    """The comma-separated numbers of flag ``name``, each in ``low..high``; None when the flag is empty."""
    if not text.strip():
        return None
    try:
        values = [cast(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise UserError(f"--{name} must be a comma-separated list of numbers, got {text!r}") from None
    bad = [v for v in values if v < low or (high is not None and v > high)]
    if bad:
        bounds = {"low": low} if high is None else {"low": low, "high": high}
        raise UserError(f"--{name} values must be {range_text(bounds)}, got {bad[0]:g}")
    return values


def build_schedule(cfg: PdartsConfig, ops_per_site: int, from_file: bool, darts_cell: bool = True) -> Schedule:
    """The stage lists from the flags, defaults filled in (``ops_per_site``: the most ops a site holds);
    :class:`UserError` on inconsistent lengths, or cells added outside the DARTS space."""
    upstream = darts_cell and not from_file
    drop = _numbers(cfg.num_to_drop, "num_to_drop", int, 1) or ([3, 2, 2] if upstream else [ops_per_site - 1])
    stages = len(drop)
    single = stages == 1 and (from_file or not darts_cell)  # the ABS variant's one stage
    default_layers = [0] * stages
    if darts_cell:
        default_layers = [1] * stages if cfg.demo else [12] if single else [0, 6, 12] if stages == 3 else default_layers
    default_rate = [0.7] if single else [0.1, 0.4, 0.7] if stages == 3 else [0.0] * stages
    lists = {"add_layers": _numbers(cfg.add_layers, "add_layers", int, 0) or default_layers,
             "add_width": _numbers(cfg.add_width, "add_width", int, 0) or [0] * stages,
             "dropout_rate": _numbers(cfg.dropout_rate, "dropout_rate", float, 0, 1) or default_rate}
    for name, values in lists.items():
        if len(values) != stages:
            raise UserError(f"--{name} has {len(values)} values but there are {stages} stages (--num_to_drop "
                            f"{','.join(map(str, drop))}); give one value per stage")
    unit = "edge" if darts_cell else "site"
    if sum(drop) != ops_per_site - 1:
        raise UserError(f"--num_to_drop {','.join(map(str, drop))} removes {sum(drop)} ops per {unit} but {unit}s "
                        f"hold up to {ops_per_site}; the stages must leave exactly 1 op per {unit} (drop "
                        f"{ops_per_site - 1} in all)")
    if not darts_cell and any(lists["add_layers"]):
        raise UserError("--add_layers grows the DARTS cell network; this space's supernet has no stage depth: "
                        "set its size with --layers")
    if any(lists["add_width"]) and cfg.init_channels is None:
        raise UserError("--add_width adds to --init_channels: give --init_channels too")
    return Schedule(lists["add_layers"], lists["add_width"], lists["dropout_rate"], drop)


def skip_dropout_rate(epoch: int, epochs: int, eps_no_arch: int, rate: float, scale: float) -> float:
    """Upstream's schedule: rate (E - e - 1) / E while weights-only, then rate exp(-scale (e - eps_no_arch))."""
    if epoch < eps_no_arch:
        return rate * (epochs - epoch - 1) / epochs
    return rate * math.exp(-(epoch - eps_no_arch) * scale)


def drop_stage(model: RelaxedSupernet, k: int, none: int | None) -> dict[str, list[list[int]]]:
    """Every site's ops (per group) without its ``k`` weakest by the model's softmax(alpha); ``none`` first."""
    return {name: [drop_weakest(ops, p, k, none) for ops, p in zip(group_ops, probs)]
            for name, group_ops, probs in zip(model.groups, model.site_ops, model.probabilities())}


def _none_op(run: SearchRun) -> int | None:
    return run.space.op_id("none") if "none" in run.space.op_names else None


def _final(run: SearchRun, cfg: PdartsConfig, model: RelaxedSupernet, k: int) -> tuple[list[Any], list[dict]]:
    """The architectures after the last stage (best first) and their details."""
    if not run.is_darts_cell:
        if len(model.groups) != 1:
            raise UserError(f"PDARTS reads one op per site off a single group; the {run.space.name} space's supernet "
                            f"has {len(model.groups)} groups")
        last = drop_stage(model, k, _none_op(run))[model.groups[0]]
        return [[site[0] for site in last]], [{}]
    normal, reduce = model.probabilities()
    before_normal, before_reduce = (switches_from_ops(ops) for ops in model.site_ops)
    genotypes = final_genotypes(normal, reduce, before_normal, before_reduce, k)
    previous = None
    for cap, genotype in genotypes.items():
        if genotype != previous:
            run.logger.info(f"at most {cap} skip-connects (normal cell): {genotype}")
        previous = genotype
    atomic_write_text(run.save / "skip_restricted.json", "{\n" + ",\n".join(
        f'"{cap}": {genotype_to_json(g).strip()}' for cap, g in genotypes.items()) + "\n}\n")
    chosen = min(cfg.max_skip, 8)
    archs, details = [genotypes[chosen]], [{"max_skip": chosen}]
    for cap, genotype in genotypes.items():  # the other caps' distinct cells, as alternatives
        if genotype not in archs:
            archs.append(genotype)
            details.append({"max_skip": cap})
    return archs, details


def run_pdarts(cfg: PdartsConfig, operations: Operations, max_epochs: int | None = None) -> SearchResult | None:
    """PDARTS in ``operations``; None when stopped after ``max_epochs`` epochs in all (to simulate a kill)."""
    if cfg.eps_no_arch > cfg.epochs:
        raise UserError(f"--eps_no_arch must lie in 0..--epochs ({cfg.epochs}), got {cfg.eps_no_arch}")
    start_ops = [sorted(site) for site in operations.ops]  # upstream's switches: op index order
    schedule = build_schedule(cfg, max(len(site) for site in start_ops), bool(cfg.operations_path),
                              is_darts_cell(operations.space))
    run = start_run(cfg, operations)
    spe = min(run.data.steps_per_epoch, cfg.steps_per_epoch or run.data.steps_per_epoch)
    state = {"stage": 0, "epoch": 0, "ops": start_ops, "history": [], "model": None}
    ckpt = open_run(run.save / CHECKPOINT, cfg, RESUMABLE, map_location=run.device)
    if ckpt is not None:
        state = ckpt
        run.logger.info(f"resumed from {run.save / CHECKPOINT} at stage {state['stage'] + 1}, epoch {state['epoch']}")
    stages = len(schedule.num_to_drop)
    first_cells = cfg.depth or (PDARTS_LAYERS if run.is_darts_cell else None)
    depths = [first_cells + a if first_cells else None for a in schedule.add_layers]
    run.logger.info(f"PDARTS on the {run.space.name} space: {stages} stage(s) of {cfg.epochs} epochs x {spe} steps"
                    f"{f', cells {depths}' if run.is_darts_cell else ''}, ops per site "
                    f"{max(len(s) for s in start_ops)} -> 1, skip dropout {schedule.dropout}")
    budget = max_epochs
    for sp in range(state["stage"], stages):
        torch.manual_seed(cfg.seed + 1000 * sp)
        channels = cfg.init_channels + schedule.add_width[sp] if cfg.init_channels else None
        model = run.space.relaxed_supernet(state["ops"], channels=channels, depth=depths[sp],
                                           skip_dropout=True).to(run.device)
        model.set_mixing(SoftmaxMixing())
        optimizer = torch.optim.SGD(model.weights(), cfg.learning_rate, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
        architect = Architect(model, cfg.momentum, cfg.weight_decay, cfg.arch_learning_rate, cfg.arch_weight_decay,
                              grad_clip=cfg.grad_clip, autocast=lambda: autocast_context(run.device, run.amp))
        if state["model"] is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            architect.optimizer.load_state_dict(state["arch_optimizer"])
        size = f"{len(model.cells)} cells, C={model.C}, " if run.is_darts_cell else ""
        run.logger.info(f"stage {sp + 1}/{stages}: {size}{max(len(s) for g in model.site_ops for s in g)} ops per "
                        f"{run.space.site_kind}")
        progress = run.logger.progress(f"stage {sp + 1}", cfg.epochs * spe, state["epoch"] * spe)
        for epoch in range(state["epoch"], cfg.epochs):
            if budget is not None and budget <= 0:
                return None
            lr = epoch_lr(epoch, cfg.epochs, cfg.learning_rate, cfg.learning_rate_min)
            for group in optimizer.param_groups:
                group["lr"] = lr
            p = skip_dropout_rate(epoch, cfg.epochs, cfg.eps_no_arch, schedule.dropout[sp], cfg.scale_factor)
            model.set_skip_dropout(p)
            train_arch = epoch >= cfg.eps_no_arch
            metrics = train_epoch(model, architect if train_arch else None, optimizer, run.data,
                                  (sp * cfg.epochs + epoch) * spe, spe, lr, cfg.grad_clip, run.amp, progress)
            model.eval()
            val = evaluate(model, run.data.val_batches(cfg.batch_size, cfg.eval_limit), run.device, run.amp)
            record = alpha_record(model, run.space, epoch + 1, stage=sp + 1, lr=lr, skip_dropout=p, **metrics,
                                  val_top1=val["top1"], val_loss=val["loss"])
            state["history"].append(record)
            step = sp * cfg.epochs + epoch + 1
            for tag in ("train_loss", "train_top1", "val_top1", "val_loss", "lr", "skip_dropout"):
                run.logger.scalar(f"search/{tag}", record[tag], step)
            log_alphas(run.logger, model, run.space, step)
            run.logger.info(f"stage {sp + 1} epoch {epoch + 1}/{cfg.epochs}: lr {lr:.5f} skip dropout {p:.3f} "
                            f"{'weights+alphas' if train_arch else 'weights only'} | train loss "
                            f"{metrics['train_loss']:.4f} top-1 {metrics['train_top1']:.2f}% | held-out top-1 "
                            f"{val['top1']:.2f}%")
            state.update(epoch=epoch + 1, model=model.state_dict(), optimizer=optimizer.state_dict(),
                         arch_optimizer=architect.optimizer.state_dict())
            save_checkpoint({"config": run_settings(cfg, RESUMABLE), **state}, run.save / CHECKPOINT)
            if budget is not None:
                budget -= 1
        if sp < stages - 1:
            state.update(stage=sp + 1, epoch=0, model=None, ops=drop_stage(model, schedule.num_to_drop[sp], None))
            for name, group in state["ops"].items():
                kept = "; ".join(",".join(run.space.op_name(o) for o in site) for site in group)
                run.logger.info(f"stage {sp + 1} done: {name} {run.space.site_kind}s keep {kept}")
            save_checkpoint({"config": run_settings(cfg, RESUMABLE), **state}, run.save / CHECKPOINT)
            continue
        archs, arch_details = _final(run, cfg, model, schedule.num_to_drop[sp])
        stage_history = [r for r in state["history"] if r["stage"] == sp + 1]
        if run.is_darts_cell:
            write_darts_files(run, archs[0], stage_history, model.site_ops)
        run.logger.info(f"architecture: {run.space.format_arch(archs[0])}")
        run.logger.close()
        return SearchResult(
            searcher="pdarts", space=operations.space.name, archs=archs, scores=[arch_score(model, a) for a in archs],
            score_name=SCORE_NAME, operations=operations.ops,
            cost={"stages": stages, "epochs": stages * cfg.epochs, "steps": stages * cfg.epochs * spe,
                  "device": str(run.device)},
            arch_details=arch_details,
            details={"last_stage_ops": dict(zip(model.groups, model.site_ops)), "history": state["history"]})
    return None


register_searcher("pdarts", PdartsConfig, "relaxed", "darts", presets={"demo": DEMO},
                  description="PDARTS: progressive DARTS, ops dropped stage by stage (CIFAR-10)")(run_pdarts)
