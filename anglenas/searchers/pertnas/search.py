"""The PertNAS searcher (spec §1, §3): expand an edge, then perturb-val, over a population of discrete cells.

1. **Population** (every rank): member m gets random ops per edge; for each edge e in 0..13 the member's cell with
   edge e expanded to all allowed ops is trained from scratch (``epochs`` at lr/2.5) and perturb-val scores each
   op of e. Rank r handles members r, r + N, r + 2N, ... (N = world size; the original's assignment, without
   dropping the ``npop % N`` leftover members). The [npop, 14, ops] score tensor is summed over ranks with
   ``all_reduce`` (each rank fills its own members' slices, so the sum is exact) and averaged over members.
2. **Coarse op selection** (rank 0): per edge the 2 ops with the lowest mean score.
3. **Fine-grained op selection** (rank 0): in the fixed edge order 13, 12, 8, ..., 1 the cell is trained (lr/3
   for the first edge, lr/2.5 after) and perturb-val keeps the op whose removal hurts most.
4. **Topology selection** (rank 0): nodes 1-3 in a seeded random order; the cell is trained, a fresh SGD at lr/2.5
   fine-tunes each incoming edge's removal and the node keeps its 2 lowest-scored edges.

The result is ``SAVE/search-NOTE/genotype.json`` (reduce = normal) and ``cell.png``. Every decision (a member's
edge scores, the coarse selection, each fine-grained op, each node's edges) is appended to the JSON decision log
(``decisions.json``, ``population/member_XX.json``) as soon as it is made, atomically; every random source is
keyed by (seed, phase, member, edge, op), so a killed search restarted with the same arguments continues after the
last finished decision, redoes none, and reaches the result it would have reached uninterrupted.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anglenas.checkpoint import atomic_write_text, check_same_settings, run_settings
from anglenas.config import field, to_yaml
from anglenas.data.device_cifar import PIPELINES, DeviceCifar, DeviceLoader, eval_batches, load_device_cifar
from anglenas.data.streams import step_seed
from anglenas.errors import UserError
from anglenas.log import RunLogger
from anglenas.searchers.pertnas.figures import draw_cell, edge_score_heatmap, score_heatmap
from anglenas.searchers.pertnas.model import (
    CANDIDATES,
    PertNasNetwork,
    Switches,
    expand_edge,
    node_edges,
    original_rank,
)
from anglenas.searchers.pertnas.perturb import Candidate, StepSettings, accuracy, perturb_val, train_phase
from anglenas.searchers.pertnas.select import (
    FINE_ORDER,
    coarse_select,
    fine_select,
    init_switches,
    node_order,
    to_genotype,
    topology_select,
)
from anglenas.searchers.registry import register_searcher
from anglenas.spaces.darts.genotypes import Genotype, save_genotype
from anglenas.spaces.darts.model_search import NUM_EDGES
from anglenas.spaces.darts.ops import PRIMITIVES
from anglenas.train.dist import DistEnv, barrier, broadcast_object, init_distributed

POPULATION, FINE, TOPOLOGY = 1, 2, 3  # phase ids in the keys of every random source
TRAIN_DATA, FINETUNE_DATA = 0, 1  # data passes of training phases and of perturb-val never share a key
DECISIONS, MEMBERS, GENOTYPE, CELL = "decisions.json", "population", "genotype.json", "cell.png"
RESUMABLE = {"save", "device", "report_freq", "distributed", "cluster", "threads", "demo", "tensorboard"}


@dataclass
class PertNasConfig:
    """PertNAS search on the DARTS space; the original's flags and defaults (spec §1)."""

    seed: int = field(2, "seed of every random source (init ops, weights, data order, augmentation, node order)")
    save: str = field("runs/", "parent folder; the run folder is SAVE/search-NOTE (rerun the same command to resume)")
    note: str = field("try", "run name")
    npop: int = field(4, "population size (members are spread over the torchrun ranks)")
    distributed: bool = field(True, "accepted for the original's command line; torchrun's WORLD_SIZE decides")
    cluster: str = field("local", "local: ranks from torchrun's environment", choices=("local",))
    train_path: str = field("", "CIFAR-10: python-pickle folder, JPEG tarball, folder of cifar_{train,test}.beton "
                                "(needs ffcv), or 'embedded'")
    batch_size: int = field(256, "batch size of training, fine-tuning and validation")
    learning_rate: float = field(0.2176, "base LR lr0: training phases use lr0/2.5 (coarse: lr0/3)")
    learning_rate_min: float = field(0.001, "eta_min of every cosine schedule (the fine-tune LR of phases A, C)")
    momentum: float = field(0.9, "SGD momentum")
    weight_decay: float = field(3e-4, "SGD weight decay")
    init_channels: int = field(16, "channels of the first cell")
    layers: int = field(5, "cells (reductions at layers//3 and 2*layers//3)")
    epochs: int = field(5, "epochs of every training phase (cosine over these epochs)")
    steps_per_epoch: int = field(0, "cap on the steps of a training epoch (0: N_train // batch_size)")
    finetune_steps: int = field(50, "F: perturb-val fine-tunes F+20+1, F+80+1 and F+130+1 steps in the phases")
    population_extra_steps: int = field(20, "extra fine-tune steps of the population phase")
    fine_extra_steps: int = field(80, "extra fine-tune steps of the fine-grained op selection")
    topology_extra_steps: int = field(130, "extra fine-tune steps of the topology selection")
    op_cap: int = field(1, "random ops per edge of an initial member")
    operations_path: str = field("", "operations file of the darts space restricting each edge's ops")
    val_on_test: bool = field(False, "score on the test set as the original did (default: a held-out split)")
    val_size: int = field(5000, "training images held out for scoring (ignored with --val_on_test)")
    split_seed: int = field(0, "seed of the train/val split")
    pipeline: str = field("ffcv", "training augmentation: ffcv (the original's) or darts (crop pad 4, flip)",
                          choices=tuple(PIPELINES))
    original_aliasing: bool = field(False, "reproduce the original's bug: weights NOT restored between candidates")
    device: str = field("auto", "cuda, cpu or auto")
    amp: bool = field(True, "fp16 autocast on CUDA (as the original)")
    tensorboard: bool = field(True, "TensorBoard scalars and score heatmaps in SAVE/search-NOTE/tb")
    threads: int = field(0, "CPU threads per process (0: torch's default; 1 helps on a loaded machine)")
    demo: bool = field(False, "the whole search on the embedded mini CIFAR-10 on the CPU in a few minutes")
    report_freq: int = field(50, "log the training loss every this many steps (0: never)")


DEMO: dict[str, Any] = dict(train_path="embedded", save="runs/", note="pertnas-demo", npop=2, batch_size=32,
                            init_channels=4, epochs=1, steps_per_epoch=4, finetune_steps=0,
                            population_extra_steps=0, fine_extra_steps=1, topology_extra_steps=2, val_size=64,
                            device="cpu", threads=1)
"""``--demo``: the whole search on the embedded mini CIFAR-10 on the CPU in a few minutes."""


def run_folder(cfg: PertNasConfig) -> Path:
    """SAVE/search-NOTE (the original appended a timestamp, so a rerun could never resume)."""
    return Path(cfg.save) / f"search-{cfg.note}"


def members_of_rank(rank: int, world: int, npop: int) -> list[int]:
    """Members n*world + rank (the original's assignment), keeping the leftovers it dropped."""
    return list(range(rank, npop, world))


def fine_tune_steps(cfg: PertNasConfig, extra: int) -> int:
    """The original's loop stops after the step whose index equals F + extra: F + extra + 1 steps."""
    return cfg.finetune_steps + extra + 1


def allowed_ops(path: str) -> list[list[int]]:
    """Candidate op ids per edge: PertNAS' 7 ops, restricted by a darts-space operations file (``none`` dropped:
    it is no candidate in PertNAS)."""
    if not path:
        return [list(CANDIDATES) for _ in range(NUM_EDGES)]
    from anglenas.operations import load_operations

    ops = load_operations(path, "darts").ops
    allowed = [sorted((op for op in edge if op in CANDIDATES), key=original_rank) for edge in ops]
    empty = [e for e, edge in enumerate(allowed) if not edge]
    if empty:
        raise UserError(f"{path}: edge(s) {empty} keep only 'none'; PertNAS needs a real op on every edge")
    return allowed


def read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); delete it to redo that part of the search") from None


def write_json(path: Path, doc: dict) -> None:
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def open_decisions(cfg: PertNasConfig, folder: Path) -> dict:
    """The decision log of a run to resume (same settings), or a new one."""
    doc = read_json(folder / DECISIONS)
    settings = run_settings(cfg, RESUMABLE)
    if doc is None:
        doc = {"format": "pertnas-decisions", "config": settings, "population": None, "coarse": None, "fine": [],
               "topology": [], "genotype": None}
        atomic_write_text(folder / "config.yaml", to_yaml(cfg))
        write_json(folder / DECISIONS, doc)
    else:
        check_same_settings(doc["config"], settings, folder)
    return doc


class PertNasSearch:
    """One rank's share of a PertNAS search (see the module docstring)."""

    def __init__(self, cfg: PertNasConfig, env: DistEnv, device: torch.device, data: DeviceCifar,
                 allowed: list[list[int]], decisions: dict, folder: Path) -> None:
        self.cfg, self.env, self.device, self.decisions, self.folder = cfg, env, device, decisions, folder
        self.allowed = allowed
        self.num_classes = data.num_classes
        self.val_x, self.val_y = (data.test_x, data.test_y) if cfg.val_on_test else (data.val_x, data.val_y)
        self.pipeline = PIPELINES[cfg.pipeline]
        self.half = cfg.amp and device.type == "cuda"
        self.loader = DeviceLoader(data.train_x, data.train_y, cfg.batch_size, cfg.seed, self.pipeline,
                                   half=self.half, channels_last=True)
        self.steps_per_epoch = min(self.loader.steps_per_epoch, cfg.steps_per_epoch or self.loader.steps_per_epoch)
        self.settings = StepSettings(cfg.momentum, cfg.weight_decay, cfg.learning_rate_min, cfg.amp)
        # rank 0 logs to SAVE/search-NOTE/log.txt and TensorBoard; rank r > 0 its members to .../rank<r>/log.txt
        self.logger = RunLogger(folder if env.is_main else folder / f"rank{env.rank}",
                                tensorboard=cfg.tensorboard and env.is_main)
        self.progress = None

    # -- building blocks ---------------------------------------------------------------------------------------
    def source(self, key, num_steps: int):
        return self.loader.passes((self.cfg.seed, *key), num_steps)

    def evaluate(self, model: torch.nn.Module) -> float:
        return accuracy(model, eval_batches(self.val_x, self.val_y, self.cfg.batch_size, self.pipeline, self.half,
                                            channels_last=True), self.cfg.amp)

    def build(self, switches: Switches, key: tuple[int, ...]) -> PertNasNetwork:
        """A freshly initialised network (the original never inherits weights), seeded by ``key``."""
        torch.manual_seed(step_seed(self.cfg.seed, *key))
        net = PertNasNetwork(switches, self.cfg.init_channels, self.num_classes, self.cfg.layers)
        return net.to(self.device, memory_format=torch.channels_last)

    def train(self, net: PertNasNetwork, key: tuple[int, ...], lr: float, tag: str | None = None):
        """Train from scratch; with ``tag``, validation accuracy after each epoch goes to the log."""

        steps = [0]

        def report(epoch: int, acc: float) -> None:
            self.logger.info(f"{tag}: epoch {epoch + 1}/{self.cfg.epochs} val acc {acc:.2f}%")

        def step_loss(loss: torch.Tensor) -> None:
            steps[0] += 1
            if steps[0] % self.cfg.report_freq == 0:
                self.logger.info(f"  training {key}: step {steps[0]}/{self.cfg.epochs * self.steps_per_epoch} "
                                 f"loss {float(loss):.3f}")

        return train_phase(net, self.source, (TRAIN_DATA, *key), lr, self.cfg.epochs, self.steps_per_epoch,
                           self.settings, self.evaluate if tag else None, report if tag else None,
                           step_loss if self.cfg.report_freq and self.env.is_main else None)

    def perturb(self, net: PertNasNetwork, optimizer, candidates: list[Candidate], key: tuple[int, ...],
                steps: int) -> list[float]:
        return perturb_val(net, optimizer, candidates, self.source, (FINETUNE_DATA, *key), steps, self.settings,
                           self.evaluate, restore_model=not self.cfg.original_aliasing)

    def save_decisions(self) -> None:
        write_json(self.folder / DECISIONS, self.decisions)

    def figure(self, tag: str, make, step: int, save: Path | None = None) -> None:
        """Log the figure ``make()`` to TensorBoard (rank 0 only), optionally save it as an image, close it."""
        if self.env.is_main and (self.cfg.tensorboard or save is not None):
            import matplotlib.pyplot as plt

            fig = make()
            self.logger.figure(tag, fig, step)
            if save is not None:
                fig.savefig(save, dpi=120)
            plt.close(fig)

    def decided(self, message: str) -> None:
        self.logger.info(message)
        if self.progress is not None:
            self.progress.update()

    # -- phase A ---------------------------------------------------------------------------------------------
    def member_path(self, member: int) -> Path:
        return self.folder / MEMBERS / f"member_{member:02d}.json"

    def score_member_edge(self, member: int, switches: Switches, edge: int) -> dict:
        ops = self.allowed[edge]
        net = self.build(expand_edge(switches, edge, ops), (POPULATION, member, edge))
        optimizer = self.train(net, (POPULATION, member, edge), self.cfg.learning_rate / 2.5)
        candidates = [Candidate(edge, net.switches[edge].index(op), op) for op in ops]
        scores = self.perturb(net, optimizer, candidates, (POPULATION, member),
                              fine_tune_steps(self.cfg, self.cfg.population_extra_steps))
        return {"ops": ops, "scores": scores}

    def population(self) -> np.ndarray:
        """This rank's members scored edge by edge; returns the members' mean [14, |PRIMITIVES|] scores."""
        cfg = self.cfg
        totals = torch.zeros(cfg.npop, NUM_EDGES, len(PRIMITIVES), dtype=torch.float64)
        for member in members_of_rank(self.env.rank, self.env.world, cfg.npop):
            path = self.member_path(member)
            doc = read_json(path)
            if doc is None:
                rng = np.random.default_rng([cfg.seed, POPULATION, member])
                doc = {"member": member, "switches": init_switches(self.allowed, cfg.op_cap, rng), "rows": {}}
                write_json(path, doc)
            for edge in range(NUM_EDGES):
                if str(edge) not in doc["rows"]:
                    t0 = time.perf_counter()
                    doc["rows"][str(edge)] = self.score_member_edge(member, doc["switches"], edge)
                    write_json(path, doc)
                    row = doc["rows"][str(edge)]
                    shown = ", ".join(f"{PRIMITIVES[o]} {s:+.2f}" for o, s in zip(row["ops"], row["scores"]))
                    self.decided(f"member {member} edge {edge} ({time.perf_counter() - t0:.1f}s): {shown}")
                row = doc["rows"][str(edge)]
                totals[member, edge, row["ops"]] = torch.tensor(row["scores"], dtype=torch.float64)
            own = np.full((NUM_EDGES, len(PRIMITIVES)), np.nan)
            for e, row in doc["rows"].items():
                own[int(e), row["ops"]] = row["scores"]
            self.figure("scores/member", lambda: score_heatmap(own, f"member {member}: perturb-val scores"), member)
        if self.env.enabled:  # each rank filled only its members' slices: an exact sum (NCCL needs a GPU tensor)
            reduced = totals.to(self.device)
            torch.distributed.all_reduce(reduced)
            totals = reduced.cpu()
        return (totals.sum(0) / cfg.npop).numpy()

    # -- phases B-D (rank 0) ---------------------------------------------------------------------------------
    def fine_grained(self, switches: Switches) -> Switches:
        cfg, done = self.cfg, {row["edge"]: row for row in self.decisions["fine"]}
        for i, edge in enumerate(FINE_ORDER):
            if edge not in done:
                ops = sorted(switches[edge])
                if len(ops) == 1:
                    row = {"edge": edge, "ops": ops, "scores": [0.0], "kept": ops[0]}
                else:
                    lr = cfg.learning_rate / (3.0 if i == 0 else 2.5)
                    net = self.build(switches, (FINE, i))
                    optimizer = self.train(net, (FINE, i), lr, tag=f"fine {i + 1}/{NUM_EDGES} training")
                    candidates = [Candidate(edge, p, op) for p, op in enumerate(ops)]
                    scores = self.perturb(net, optimizer, candidates, (FINE,),
                                          fine_tune_steps(cfg, cfg.fine_extra_steps))
                    row = {"edge": edge, "ops": ops, "scores": scores, "kept": fine_select(ops, scores)}
                self.decisions["fine"].append(row)
                self.save_decisions()
                done[edge] = row
                self.decided(f"edge {edge}: keep {PRIMITIVES[row['kept']]} "
                             f"(scores {', '.join(f'{PRIMITIVES[o]} {s:+.2f}' for o, s in zip(ops, row['scores']))})")
            switches[edge] = [done[edge]["kept"]]
        table = np.full((NUM_EDGES, len(PRIMITIVES)), np.nan)
        for row in self.decisions["fine"]:
            table[row["edge"], row["ops"]] = row["scores"]
        self.figure("scores/fine", lambda: score_heatmap(table, "fine-grained op selection"), 0)
        return switches

    def topology(self, switches: Switches) -> Switches:
        cfg = self.cfg
        order = node_order(np.random.default_rng([cfg.seed, TOPOLOGY]))
        for rnd, node in enumerate(order):
            if rnd < len(self.decisions["topology"]):
                row = self.decisions["topology"][rnd]
            else:
                edges = [e for e in node_edges(node) if switches[e]]
                scores: list[float] = [0.0] * len(edges)
                if len(edges) > 2:
                    net = self.build(switches, (TOPOLOGY, rnd))
                    self.train(net, (TOPOLOGY, rnd), cfg.learning_rate / 2.5, tag=f"topology {rnd + 1}/3 training")
                    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.learning_rate / 2.5, momentum=cfg.momentum,
                                                weight_decay=cfg.weight_decay)
                    candidates = [Candidate(e, 0, switches[e][0]) for e in edges]
                    scores = self.perturb(net, optimizer, candidates, (TOPOLOGY, rnd),
                                          fine_tune_steps(cfg, cfg.topology_extra_steps))
                pruned = topology_select(node, switches, dict(zip(edges, scores)))
                row = {"node": node, "edges": edges, "scores": scores,
                       "kept": [e for e in node_edges(node) if pruned[e]]}
                self.decisions["topology"].append(row)
                self.save_decisions()
                self.decided(f"node {node}: keep edges {row['kept']} "
                             f"(scores {', '.join(f'{e}: {s:+.2f}' for e, s in zip(edges, scores))})")
            switches = [[] if e in node_edges(row["node"]) and e not in row["kept"] else s
                        for e, s in enumerate(switches)]
        self.figure("scores/topology", lambda: edge_score_heatmap(self.decisions["topology"], "topology selection"), 0)
        return switches

    # -- driver ------------------------------------------------------------------------------------------------
    def run(self) -> Genotype | None:
        cfg, env = self.cfg, self.env
        mine = members_of_rank(env.rank, env.world, cfg.npop)
        population_done = broadcast_object(self.decisions["population"] is not None, env)
        done = sum(len((read_json(self.member_path(m)) or {}).get("rows", {})) for m in mine)
        total = len(mine) * NUM_EDGES
        if env.is_main:
            total += 1 + NUM_EDGES + 3
            done += (self.decisions["coarse"] is not None) + len(self.decisions["fine"]) + len(
                self.decisions["topology"])
        if population_done:
            done = max(done, len(mine) * NUM_EDGES)
        self.progress = self.logger.progress("pertnas decisions", total, start=min(done, total),
                                             every=1)
        t0 = time.perf_counter()
        if not population_done:
            mean = self.population()
            if env.is_main:
                self.decisions["population"] = {"mean_scores": mean.tolist()}
                self.save_decisions()
        barrier(env)
        if env.enabled:  # only rank 0 goes on, for hours: no collective may wait on it
            torch.distributed.destroy_process_group()
        if not env.is_main:
            return None
        mean = np.asarray(self.decisions["population"]["mean_scores"])
        masked = np.full_like(mean, np.nan)
        for e, ops in enumerate(self.allowed):
            masked[e, ops] = mean[e, ops]
        self.figure("scores/population_mean", lambda: score_heatmap(masked, f"mean over {cfg.npop} members"), 0)
        if self.decisions["coarse"] is None:
            self.decisions["coarse"] = coarse_select(mean, self.allowed)
            self.save_decisions()
            convs = sum(PRIMITIVES[o].endswith(("conv_3x3", "conv_5x5")) for edge in self.decisions["coarse"]
                        for o in edge)
            self.decided(f"coarse op selection: {convs} convs among {2 * NUM_EDGES} kept ops")
        switches = self.topology(self.fine_grained([list(e) for e in self.decisions["coarse"]]))
        genotype = to_genotype(switches)
        save_genotype(genotype, self.folder / GENOTYPE)
        self.figure("cell", lambda: draw_cell(genotype), 0, save=self.folder / CELL)
        if self.decisions["genotype"] is None:
            self.decisions["genotype"] = {"normal": genotype.normal}
            self.save_decisions()
        self.logger.info(f"Topology selection finished; searching time this session "
                         f"{time.perf_counter() - t0:.0f}s")
        self.logger.info(f"genotype={genotype}")
        self.logger.info(f"wrote {self.folder / GENOTYPE} (train it: darts-master/train.py --arch "
                         f"{self.folder / GENOTYPE})")
        self.logger.close()
        return genotype


@register_searcher("pertnas", PertNasConfig, "relaxed", "darts", description="PertNAS: expand an edge, then perturb-val (DARTS space)")
def run_pertnas(cfg: PertNasConfig) -> Genotype | None:
    """Run (or resume) a PertNAS search; returns the genotype on rank 0, None on the other ranks."""
    if not cfg.train_path:
        raise UserError("pass --train_path (a CIFAR-10 source, or 'embedded') or --demo")
    if cfg.npop < 1 or cfg.op_cap < 1 or cfg.epochs < 1:
        raise UserError("--npop, --op_cap and --epochs must be at least 1")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env, device = init_distributed(cfg.device)
    if env.world > cfg.npop:
        raise UserError(f"{env.world} processes for a population of {cfg.npop}: run torchrun with "
                        f"--nproc_per_node at most --npop")
    allowed = allowed_ops(cfg.operations_path)  # bad input fails here, before the run folder exists
    data = load_device_cifar(cfg.train_path, device, 0 if cfg.val_on_test else cfg.val_size, cfg.split_seed)
    folder = run_folder(cfg)
    decisions, error = None, None
    if env.is_main:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            decisions = open_decisions(cfg, folder)
        except UserError as exc:
            error = str(exc)
    error, decisions = broadcast_object((error, decisions), env)
    if error:
        raise UserError(error)
    return PertNasSearch(cfg, env, device, data, allowed, decisions, folder).run()
