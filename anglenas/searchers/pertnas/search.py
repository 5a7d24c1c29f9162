"""The PertNAS searcher: expand a site, then perturb-val, over a population of discrete networks, on any space with a
relaxed supernet (its home: the DARTS space, where it ends with the cell's topology selection).

    python searching/main.py --searcher pertnas --space nb201 --demo
    torchrun --nproc_per_node=4 darts-master/search_evolutionary.py --npop 4 --train_path /data/cifar10

The run folder is ``SAVE/search-NOTE``: the decision log (``decisions.json``, ``population/member_XX.json``),
``log.txt``, ``config.yaml``, ``tb/``, the search result and, on the DARTS space, ``genotype.json`` and ``cell.png``.
Rerunning the same command resumes a killed search after its last decision. The phases:
:mod:`anglenas.searchers.pertnas.phases`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from anglenas.checkpoint import atomic_write_text, check_same_settings, run_settings
from anglenas.config import RuntimeConfig, SizeConfig, field, override, to_yaml
from anglenas.data.device_cifar import PIPELINES, load_device_cifar
from anglenas.errors import UserError
from anglenas.operations import Operations
from anglenas.runtime import use_threads
from anglenas.search_result import SearchResult
from anglenas.searchers.pertnas.cell import ORIGINAL_CHANNELS, ORIGINAL_LAYERS
from anglenas.searchers.pertnas.model import masked_network
from anglenas.searchers.pertnas.phases import MEMBERS, PertNasSearch, members_of_rank, read_json, write_json
from anglenas.searchers.pertnas.sites import Sites
from anglenas.searchers.registry import SearchInputConfig, register_searcher
from anglenas.train.dist import broadcast_object, init_distributed

DECISIONS = "decisions.json"
RESUMABLE = {"save", "device", "report_freq", "distributed", "cluster", "threads", "demo", "tensorboard"}
CIFAR_SIZE = 32


@dataclass
class PertNasConfig(SearchInputConfig, SizeConfig, RuntimeConfig):
    """PertNAS search; the original's flags and defaults (``search_evolutionary.py``).

    ``--amp`` (on by default, as the original) is fp16 autocast with a GradScaler on CUDA, the original's
    precision, not the bf16 autocast ``--amp`` means elsewhere.
    """

    seed: int = override(2)
    amp: bool = override(True)
    save: str = override("runs/")
    stem_stride: int = override(1)
    note: str = field("try", "run name: the run folder is SAVE/search-NOTE (rerun the same command to resume)")
    npop: int = field(4, "population size (members are spread over the torchrun ranks)", low=1)
    distributed: bool = field(True, "accepted for the original's command line; torchrun's WORLD_SIZE decides")
    cluster: str = field("local", "local: ranks from torchrun's environment", choices=("local",))
    train_path: str = field("", "CIFAR-10: python-pickle folder, JPEG tarball, folder of cifar_{train,test}.beton "
                                "(needs ffcv), or 'embedded'")
    batch_size: int = field(256, "batch size of training, fine-tuning and validation", low=1)
    learning_rate: float = field(0.2176, "base LR lr0: training phases use lr0/2.5 (the first fine-grained one "
                                         "lr0/3)", low=0)
    learning_rate_min: float = field(0.001, "eta_min of every cosine schedule (the fine-tune LR of the population "
                                            "and fine-grained phases)", low=0)
    momentum: float = field(0.9, "SGD momentum", low=0, high=1)
    weight_decay: float = field(3e-4, "SGD weight decay", low=0)
    init_channels: int | None = field(None, "channels of the search network (default: 16 x width_mult on the "
                                            "darts space, as the original; the space's own search width "
                                            "elsewhere)", low=1)
    epochs: int = field(5, "epochs of every training phase (cosine over these epochs)", low=1)
    steps_per_epoch: int = field(0, "cap on the steps of a training epoch (0: N_train // batch_size)", low=0)
    finetune_steps: int = field(50, "F: perturb-val fine-tunes F+20+1, F+80+1 and F+130+1 steps in the phases",
                                low=0)
    population_extra_steps: int = field(20, "extra fine-tune steps of the population phase", low=0)
    fine_extra_steps: int = field(80, "extra fine-tune steps of the fine-grained op selection", low=0)
    topology_extra_steps: int = field(130, "extra fine-tune steps of the topology selection (darts space)", low=0)
    op_cap: int = field(1, "random ops per site of an initial member", low=1)
    val_on_test: bool = field(False, "score on the test set as the original did (default: a held-out split)")
    val_size: int = field(5000, "training images held out for scoring (ignored with --val_on_test)", low=1)
    split_seed: int = field(0, "seed of the train/val split", low=0)
    pipeline: str = field("ffcv", "training augmentation: ffcv (the original's) or darts (crop pad 4, flip)",
                          choices=tuple(PIPELINES))
    original_aliasing: bool = field(False, "reproduce the original's perturb-val: weights NOT restored between "
                                           "candidates, and the topology phase fine-tunes all 14 edges in order")
    tensorboard: bool = field(True, "TensorBoard scalars and score heatmaps in SAVE/search-NOTE/tb")
    report_freq: int = field(50, "log the training loss every this many steps (0: never)", low=0)

    flag_aliases: ClassVar[dict[str, str]] = {"layers": "depth"}
    """``--layers``: the cells of the search network (default: 5 on the darts space, as the original)."""

    def run_folder(self) -> Path:
        """SAVE/search-NOTE (the original appended a timestamp, so a rerun could never resume)."""
        return Path(self.save) / f"search-{self.note}"


DEMO: dict[str, Any] = dict(train_path="embedded", save="runs/", note="pertnas-demo", npop=2, batch_size=32,
                            width_mult=0.25, epochs=1, steps_per_epoch=4, finetune_steps=0,
                            population_extra_steps=0, fine_extra_steps=1, topology_extra_steps=2, val_size=64,
                            device="cpu", threads=1)
"""``--demo``: the whole search on the embedded mini CIFAR-10 on the CPU in a few minutes (on the DARTS space C = 4,
as 16 x width 0.25; ``--space NAME --demo`` adds that space's demo sizes)."""


def open_decisions(cfg: PertNasConfig, folder: Path) -> dict:
    """The decision log of a run to resume (same settings), or a new one."""
    doc = read_json(folder / DECISIONS)
    settings = run_settings(cfg, RESUMABLE)
    if doc is None:
        doc = {"format": "pertnas-decisions", "config": settings, "population": None, "coarse": None, "fine": [],
               "topology": [], "arch": None}
        atomic_write_text(folder / "config.yaml", to_yaml(cfg))
        write_json(folder / DECISIONS, doc)
    else:
        check_same_settings(doc["config"], settings, folder)
    return doc


def network_size(cfg: PertNasConfig, sites: Sites) -> tuple[int | None, int | None]:
    """(channels, cells) of the search network: the flags, else the original's 16 x width and 5 cells on the DARTS
    space, else None (the space's own search size)."""
    if not sites.darts_cell:
        return cfg.init_channels, cfg.depth
    return (cfg.init_channels or max(1, round(ORIGINAL_CHANNELS * cfg.width_mult)), cfg.depth or ORIGINAL_LAYERS)


def search_cost(cfg: PertNasConfig, sites: Sites, decisions: dict, steps_per_epoch: int) -> dict[str, int]:
    """Trainings, training steps and fine-tune steps of the whole search (every rank together)."""
    scored = [len(c) for c in sites.candidates if len(c) > 1]
    trainings = cfg.npop * len(scored)
    finetunes = cfg.npop * sum(scored) * (cfg.finetune_steps + cfg.population_extra_steps + 1)
    for row in decisions["fine"]:
        if len(row["ops"]) > 1:
            trainings += 1
            finetunes += len(row["ops"]) * (cfg.finetune_steps + cfg.fine_extra_steps + 1)
    for row in decisions["topology"]:
        trainings += 1
        finetunes += len(row.get("all_scores", row["scores"])) * (cfg.finetune_steps + cfg.topology_extra_steps + 1)
    return {"trainings": trainings, "training_steps": trainings * cfg.epochs * steps_per_epoch,
            "finetune_steps": finetunes}


def kept_score(decisions: dict) -> float | None:
    """The mean fine-grained perturb-val score of the kept ops (over the sites that had a choice)."""
    kept = [s for row in decisions["fine"] if len(row["ops"]) > 1
            for op, s in zip(row["ops"], row["scores"]) if op == row["kept"]]
    return sum(kept) / len(kept) if kept else None


@register_searcher("pertnas", PertNasConfig, "relaxed", "darts", presets={"demo": DEMO},
                   description="PertNAS: expand a site, then perturb-val (CIFAR-10)")
def run_pertnas(cfg: PertNasConfig, operations: Operations) -> SearchResult | None:
    """Run (or resume) a PertNAS search of ``operations``; the result on rank 0, None on the other ranks."""
    if not cfg.train_path:
        raise UserError("pass --train_path (a CIFAR-10 source, or 'embedded') or --demo")
    if cfg.input_size not in (None, CIFAR_SIZE):
        raise UserError(f"PertNAS searches on {CIFAR_SIZE}x{CIFAR_SIZE} CIFAR-10 images; drop --input_size "
                        f"{cfg.input_size}")
    sites = Sites.of(operations)  # bad input fails here, before any work
    threads = use_threads(cfg.threads)
    env, device = init_distributed(cfg.device)
    if env.world > cfg.npop:
        raise UserError(f"{env.world} processes for a population of {cfg.npop}: run torchrun with "
                        f"--nproc_per_node at most --npop")
    data = load_device_cifar(cfg.train_path, device, 0 if cfg.val_on_test else cfg.val_size, cfg.split_seed)
    space = operations.space.scaled(cfg.width_mult, input_size=CIFAR_SIZE, num_classes=data.num_classes,
                                    stem_stride=cfg.stem_stride)
    size = network_size(cfg, sites)
    with torch.device("meta"):  # a size the space refuses fails here, before any training
        masked_network(space, sites.candidates, *size)
    folder = cfg.run_folder()
    decisions, error = None, None
    if env.is_main:
        try:
            (folder / MEMBERS).mkdir(parents=True, exist_ok=True)
            decisions = open_decisions(cfg, folder)
        except UserError as exc:
            error = str(exc)
    error, decisions = broadcast_object((error, decisions), env)
    if error:
        raise UserError(error)
    search = PertNasSearch(cfg, env, device, data, sites, space, size, decisions, folder)
    search.logger.info(f"pertnas on the {space.name} space ({sites.num_sites} {space.site_kind}s), "
                       f"{len(members_of_rank(env.rank, env.world, cfg.npop))} member(s) on rank {env.rank} of "
                       f"{env.world}, device {device}, {threads} CPU thread(s)")
    arch = search.run()
    if arch is None:
        return None
    return SearchResult(
        searcher="pertnas", space=operations.space.name, archs=[arch], scores=[kept_score(decisions)],
        score_name="mean perturb-val score of the kept ops (accuracy change in pp after removing one; lower: "
                   "the op mattered more)",
        operations=operations.ops,
        cost={"device": str(device), "processes": env.world,
              **search_cost(cfg, sites, decisions, search.steps_per_epoch)},
        details={"run_folder": str(folder),
                 "decisions": {k: v for k, v in decisions.items() if k not in ("format", "config")}})
