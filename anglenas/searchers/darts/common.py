"""What the DARTS and PDARTS searches share around their loops: the run (device, data, the space at the data's
size, log), the per-epoch record of the architecture weights, the score of a derived architecture, and on the
DARTS space the files upstream users expect (``genotype.json`` and the figures)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anglenas.log import RunLogger
from anglenas.operations import Operations
from anglenas.runtime import pick_device, use_threads
from anglenas.searchers.darts.plots import plot_alphas, plot_genotype
from anglenas.searchers.darts.searchdata import CellSearchConfig, SearchData
from anglenas.spaces.base import SearchSpace
from anglenas.spaces.darts.genotypes import Genotype, save_genotype
from anglenas.spaces.darts.space import DartsSpace
from anglenas.spaces.relaxed import RelaxedSupernet

CHECKPOINT, GENOTYPE = "checkpoint.pt", "genotype.json"
SCORE_NAME = "mean softmax(alpha) of the chosen ops"


@dataclass
class SearchRun:
    """A search's device, data, space (at the data's resolution and classes), run folder and log."""

    device: torch.device
    amp: bool
    data: SearchData
    space: SearchSpace
    save: Path
    logger: RunLogger

    @property
    def is_darts_cell(self) -> bool:
        return is_darts_cell(self.space)


def is_darts_cell(space: SearchSpace) -> bool:
    """Whether ``space`` is the DARTS cell space (genotypes, cell rules, upstream's files and figures)."""
    return isinstance(space, DartsSpace)


def start_run(cfg: CellSearchConfig, operations: Operations) -> SearchRun:
    """Device and threads, the seed, the data split, the space at the data's size, then the log (created only once
    the inputs are known to be good: bad input leaves no run folder behind)."""
    device = pick_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    threads = use_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = SearchData(cfg, cfg.train_portion, cfg.batch_size, cfg.seed, device)
    space = operations.space.scaled(cfg.width_mult, cfg.input_size or data.input_size, data.num_classes,
                                    cfg.stem_stride)
    logger = RunLogger(cfg.save)
    logger.info(f"{operations.space.name} space, {operations.size:.4g} architectures "
                f"({cfg.operations_path or 'the whole space'}); device {device}, {threads} CPU threads")
    return SearchRun(device, cfg.amp and device.type == "cuda", data, space, Path(cfg.save), logger)


def alpha_record(model: RelaxedSupernet, space: SearchSpace, epoch: int, **metrics: Any) -> dict:
    """One history entry: the epoch, its metrics, softmax(alpha) of every site per group, and the architecture
    they give (as text)."""
    probs = model.probabilities()
    return {"epoch": epoch, **metrics,
            "alphas": {name: [p.round(6).tolist() for p in group] for name, group in zip(model.groups, probs)},
            "arch": space.format_arch(model.derive(probs))}


def log_alphas(logger: RunLogger, model: RelaxedSupernet, space: SearchSpace, step: int) -> None:
    """TensorBoard scalars of every architecture weight (tag ``alphas/<group>/<site>/<op>``)."""
    for name, probs, group in zip(model.groups, model.probabilities(), model.site_ops):
        for s, (p, ops) in enumerate(zip(probs, group)):
            for i, op in enumerate(ops):
                logger.scalar(f"alphas/{name}/{s:02d}/{space.op_name(op)}", float(p[i]), step)


def arch_score(model: RelaxedSupernet, arch: Any) -> float:
    """The mean softmax(alpha) of the ops ``arch`` chooses (1.0: every choice was certain)."""
    probs = model.probabilities()
    return float(np.mean([probs[g][s][model.site_ops[g][s].index(op)] for g, s, op in model.chosen(arch)]))


def write_darts_files(run: SearchRun, genotype: Genotype, history: list[dict], site_ops: list[list[list[int]]]
                      ) -> None:
    """``genotype.json`` (what ``darts-master/train.py --arch`` reads), ``alphas.png`` (softmax(alpha) of every
    edge over the epochs of ``history``, columns of ``site_ops``) and ``genotype.png`` (also to TensorBoard)."""
    save_genotype(genotype, run.save / GENOTYPE)
    step = history[-1]["epoch"] if history else 0
    if history:  # PNG only: TensorBoard has every alpha as a scalar curve (alphas/...)
        plot_alphas(history, *site_ops, run.save / "alphas.png")
    run.logger.figure("search/genotype", plot_genotype(genotype, run.save / "genotype.png",
                                                       f"genotype found in {run.save}"), step)
    run.logger.info(f"wrote {run.save / GENOTYPE} (train it: darts-master/train.py --arch {run.save / GENOTYPE})")
