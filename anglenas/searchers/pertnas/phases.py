"""The phases of a PertNAS search on one rank: population, coarse and fine-grained op selection, topology.

1. **Population** (every rank): member m gets ``op_cap`` random candidates per site; for each site s in order the
   member's network with s expanded to all its candidates is trained from scratch (``epochs`` at lr0/2.5) and
   perturb-val scores each candidate of s. Rank r handles members r, r + N, r + 2N, ... (N = world size; the
   original's assignment, without dropping the ``npop % N`` leftover members). The [npop, sites, ops] score tensor
   is summed over ranks with ``all_reduce`` (each rank fills its own members' slices, so the sum is exact) and
   averaged over members.
2. **Coarse op selection** (rank 0): per site the 2 candidates with the lowest mean score.
3. **Fine-grained op selection** (rank 0): site by site (:attr:`Sites.fine_order`) the network is trained (lr0/3 for
   the first site, lr0/2.5 after) and perturb-val keeps the op whose removal hurts most.
4. **Topology selection** (rank 0, DARTS space only): nodes 1-3 in a seeded random order; the cell is trained, a
   fresh SGD at lr0/2.5 fine-tunes each incoming edge's removal and the node keeps its 2 lowest-scored edges.

Every decision is appended to the decision log (``decisions.json``, ``population/member_XX.json``) atomically as
soon as it is made, and every random source is keyed by (seed, phase, member, site, op), so a resumed search
continues after its last decision and reaches the result an uninterrupted one reaches.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anglenas.checkpoint import atomic_write_text
from anglenas.data.device_cifar import PIPELINES, DeviceCifar, DeviceLoader, eval_batches
from anglenas.data.streams import step_seed
from anglenas.errors import UserError
from anglenas.log import RunLogger
from anglenas.searchers.pertnas.cell import REMOVED, Switches, node_edges, node_order, prune, topology_select
from anglenas.searchers.pertnas.figures import draw_cell, edge_score_heatmap, score_heatmap
from anglenas.searchers.pertnas.model import Masks, expand_site, masked_network
from anglenas.searchers.pertnas.perturb import Candidate, StepSettings, accuracy, new_sgd, perturb_val, train_phase
from anglenas.searchers.pertnas.select import coarse_select, fine_select, init_switches
from anglenas.searchers.pertnas.sites import Sites
from anglenas.spaces.base import SearchSpace
from anglenas.spaces.darts.genotypes import save_genotype
from anglenas.spaces.relaxed import RelaxedSupernet
from anglenas.train.dist import DistEnv, barrier, broadcast_object

POPULATION, FINE, TOPOLOGY = 1, 2, 3  # phase ids in the keys of every random source
TRAIN_DATA, FINETUNE_DATA = 0, 1  # data passes of training phases and of perturb-val never share a key
MEMBERS, GENOTYPE = "population", "genotype.json"


def read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); delete it to redo that part of the search") from None


def write_json(path: Path, doc: dict) -> None:
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def members_of_rank(rank: int, world: int, npop: int) -> list[int]:
    """Members n*world + rank (the original's assignment), keeping the leftovers it dropped."""
    return list(range(rank, npop, world))


class PertNasSearch:
    """One rank's share of a PertNAS search (see the module docstring).

    ``cfg`` is a :class:`~anglenas.searchers.pertnas.search.PertNasConfig`; ``space`` the space at the size the
    networks are built (``channels``/``depth``: the relaxed supernet's width and cells, None for the space's own);
    ``decisions`` the decision log, written to ``folder``.
    """

    def __init__(self, cfg: Any, env: DistEnv, device: torch.device, data: DeviceCifar, sites: Sites,
                 space: SearchSpace, size: tuple[int | None, int | None], decisions: dict, folder: Path) -> None:
        self.cfg, self.env, self.device, self.decisions, self.folder = cfg, env, device, decisions, folder
        self.sites, self.space, (self.channels, self.depth) = sites, space, size
        self.num_ops = len(space.op_names)
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

    def build(self, switches: Switches, key: tuple[int, ...]) -> tuple[RelaxedSupernet, Masks]:
        """A freshly initialised network (the original never inherits weights), seeded by ``key``."""
        torch.manual_seed(step_seed(self.cfg.seed, *key))
        net, masks = masked_network(self.space, switches, self.channels, self.depth)
        return net.to(self.device, memory_format=torch.channels_last), masks

    def train(self, net: RelaxedSupernet, key: tuple[int, ...], lr: float, tag: str | None = None):
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

    def perturb(self, net: RelaxedSupernet, masks: Masks, optimizer, candidates: list[Candidate],
                key: tuple[int, ...], steps: int) -> list[float]:
        return perturb_val(net, masks, optimizer, candidates, self.source, (FINETUNE_DATA, *key), steps,
                           self.settings, self.evaluate, restore_model=not self.cfg.original_aliasing)

    def fine_tune_steps(self, extra: int) -> int:
        """The original's loop stops after the step whose index equals F + extra: F + extra + 1 steps."""
        return self.cfg.finetune_steps + extra + 1

    def save_decisions(self) -> None:
        write_json(self.folder / "decisions.json", self.decisions)

    def figure(self, tag: str, make, step: int, save: Path | None = None) -> None:
        """Log the figure ``make()`` to TensorBoard (rank 0 only), optionally save it as an image, close it."""
        if self.env.is_main and (self.cfg.tensorboard or save is not None):
            import matplotlib.pyplot as plt

            fig = make()
            self.logger.figure(tag, fig, step)
            if save is not None:
                fig.savefig(save, dpi=120)
            plt.close(fig)

    def heatmap(self, tag: str, table: np.ndarray, title: str, step: int) -> None:
        columns = self.sites.columns()
        self.figure(tag, lambda: score_heatmap(table[:, columns], [self.space.op_name(op) for op in columns],
                                               self.space.site_kind, title), step)

    def decided(self, message: str) -> None:
        self.logger.info(message)
        if self.progress is not None:
            self.progress.update()

    def shown(self, ops, scores) -> str:
        return ", ".join(f"{self.space.op_name(o)} {s:+.2f}" for o, s in zip(ops, scores))

    # -- phase A ---------------------------------------------------------------------------------------------
    def member_path(self, member: int) -> Path:
        return self.folder / MEMBERS / f"member_{member:02d}.json"

    def score_member_site(self, member: int, switches: Switches, site: int) -> dict:
        """The perturb-val scores of every candidate of ``site`` in the member's network with ``site`` expanded (a
        site with one candidate has nothing to decide: score 0, no training)."""
        ops = self.sites.candidates[site]
        if len(ops) == 1:
            return {"ops": ops, "scores": [0.0]}
        expanded = expand_site(switches, site, self.sites.ordered(site, ops))
        net, masks = self.build(expanded, (POPULATION, member, site))
        optimizer = self.train(net, (POPULATION, member, site), self.cfg.learning_rate / 2.5)
        candidates = [Candidate(site, expanded[site].index(op), op) for op in ops]
        scores = self.perturb(net, masks, optimizer, candidates, (POPULATION, member),
                              self.fine_tune_steps(self.cfg.population_extra_steps))
        return {"ops": ops, "scores": scores}

    def population(self) -> np.ndarray:
        """This rank's members scored site by site; returns the members' mean [sites, ops of the table] scores."""
        cfg, n = self.cfg, self.sites.num_sites
        totals = torch.zeros(cfg.npop, n, self.num_ops, dtype=torch.float64)
        for member in members_of_rank(self.env.rank, self.env.world, cfg.npop):
            path = self.member_path(member)
            doc = read_json(path)
            if doc is None:
                rng = np.random.default_rng([cfg.seed, POPULATION, member])
                doc = {"member": member, "switches": init_switches(self.sites, cfg.op_cap, rng), "rows": {}}
                write_json(path, doc)
            for site in range(n):
                if str(site) not in doc["rows"]:
                    t0 = time.perf_counter()
                    doc["rows"][str(site)] = self.score_member_site(member, doc["switches"], site)
                    write_json(path, doc)
                    row = doc["rows"][str(site)]
                    self.decided(f"member {member} {self.space.site_name(site)} ({time.perf_counter() - t0:.1f}s): "
                                 f"{self.shown(row['ops'], row['scores'])}")
                row = doc["rows"][str(site)]
                totals[member, site, row["ops"]] = torch.tensor(row["scores"], dtype=torch.float64)
            own = np.full((n, self.num_ops), np.nan)
            for s, row in doc["rows"].items():
                own[int(s), row["ops"]] = row["scores"]
            self.heatmap("scores/member", own, f"member {member}: perturb-val scores", member)
        if self.env.enabled:  # each rank filled only its members' slices: an exact sum (NCCL needs a GPU tensor)
            reduced = totals.to(self.device)
            torch.distributed.all_reduce(reduced)
            totals = reduced.cpu()
        return (totals.sum(0) / cfg.npop).numpy()

    # -- phases B-D (rank 0) ---------------------------------------------------------------------------------
    def fine_grained(self, switches: Switches) -> Switches:
        """One op per site: in :attr:`Sites.fine_order`, each site's ops scored in candidate order."""
        cfg, done = self.cfg, {row["site"]: row for row in self.decisions["fine"]}
        for i, site in enumerate(self.sites.fine_order):
            if site not in done:
                ops = self.sites.visiting(site, switches[site])
                if len(ops) == 1:
                    row = {"site": site, "ops": ops, "scores": [0.0], "kept": ops[0]}
                else:  # the first network trained after the coarse selection: lr0/3, as the original's
                    first = all(len(r["ops"]) == 1 for r in self.decisions["fine"])
                    lr = cfg.learning_rate / (3.0 if first else 2.5)
                    net, masks = self.build(switches, (FINE, i))
                    optimizer = self.train(net, (FINE, i), lr, tag=f"fine {i + 1}/{self.sites.num_sites} training")
                    candidates = [Candidate(site, switches[site].index(op), op) for op in ops]
                    scores = self.perturb(net, masks, optimizer, candidates, (FINE,),
                                          self.fine_tune_steps(cfg.fine_extra_steps))
                    row = {"site": site, "ops": ops, "scores": scores,
                           "kept": fine_select(self.sites, site, ops, scores)}
                self.decisions["fine"].append(row)
                self.save_decisions()
                done[site] = row
                self.decided(f"{self.space.site_name(site)}: keep {self.space.op_name(row['kept'])} "
                             f"(scores {self.shown(ops, row['scores'])})")
            switches[site] = [done[site]["kept"]]
        table = np.full((self.sites.num_sites, self.num_ops), np.nan)
        for row in self.decisions["fine"]:
            table[row["site"], row["ops"]] = row["scores"]
        self.heatmap("scores/fine", table, "fine-grained op selection", 0)
        return switches

    def score_edges(self, switches: Switches, node: int, rnd: int) -> tuple[list[int], list[float], list[float]]:
        """(live incoming edges of ``node``, their scores, the scores of every edge fine-tuned). The original
        fine-tuned the removal of all 14 edges in edge order (removed ones too, with no effect) and then picked the
        node: with ``--original_aliasing``, where a candidate starts from the weights the previous one left, that
        order changes the scores and is kept; with restored weights only the node's edges are fine-tuned (the same
        decision for 3-5 fine-tunes instead of 14)."""
        cfg = self.cfg
        edges = [e for e in node_edges(node) if switches[e]]
        net, masks = self.build(switches, (TOPOLOGY, rnd))
        self.train(net, (TOPOLOGY, rnd), cfg.learning_rate / 2.5, tag=f"topology {rnd + 1}/3 training")
        optimizer = new_sgd(net, cfg.learning_rate / 2.5, self.settings)  # fresh: no momentum state
        scored = range(len(switches)) if cfg.original_aliasing else edges
        candidates = [Candidate(e, 0, switches[e][0]) if switches[e] else Candidate(e, None, REMOVED) for e in scored]
        scores = self.perturb(net, masks, optimizer, candidates, (TOPOLOGY, rnd),
                              self.fine_tune_steps(cfg.topology_extra_steps))
        by_edge = dict(zip(scored, scores))
        return edges, [by_edge[e] for e in edges], scores

    def topology(self, switches: Switches) -> Switches:
        """The DARTS cell's topology selection: each of nodes 1-3 keeps its 2 lowest-scored incoming edges."""
        order = node_order(np.random.default_rng([self.cfg.seed, TOPOLOGY]))
        for rnd, node in enumerate(order):
            if rnd < len(self.decisions["topology"]):
                row = self.decisions["topology"][rnd]
            else:
                edges, scores, every = self.score_edges(switches, node, rnd)
                pruned = topology_select(node, switches, dict(zip(edges, scores)))
                row = {"node": node, "edges": edges, "scores": scores,
                       "kept": [e for e in node_edges(node) if pruned[e]]}
                if len(every) > len(edges):
                    row["all_scores"] = every
                self.decisions["topology"].append(row)
                self.save_decisions()
                self.decided(f"node {node}: keep edges {row['kept']} "
                             f"(scores {', '.join(f'{e}: {s:+.2f}' for e, s in zip(edges, scores))})")
            switches = prune(switches, row["node"], row["kept"])
        self.figure("scores/topology", lambda: edge_score_heatmap(self.decisions["topology"], "topology selection"), 0)
        return switches

    # -- driver ------------------------------------------------------------------------------------------------
    def run(self) -> Any:
        """The architecture found (on rank 0; None on the other ranks): a genotype on the DARTS space (also written
        to ``genotype.json`` and drawn in ``cell.png``), else one op id per site."""
        cfg, env, n = self.cfg, self.env, self.sites.num_sites
        mine = members_of_rank(env.rank, env.world, cfg.npop)
        population_done = broadcast_object(self.decisions["population"] is not None, env)
        done = sum(len((read_json(self.member_path(m)) or {}).get("rows", {})) for m in mine)
        total = len(mine) * n
        if env.is_main:
            total += 1 + n + (3 if self.sites.darts_cell else 0)
            done += (self.decisions["coarse"] is not None) + len(self.decisions["fine"]) + len(
                self.decisions["topology"])
        if population_done:
            done = max(done, len(mine) * n)
        self.progress = self.logger.progress("pertnas decisions", total, start=min(done, total), every=1)
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
        for s, ops in enumerate(self.sites.candidates):
            masked[s, ops] = mean[s, ops]
        self.heatmap("scores/population_mean", masked, f"mean over {cfg.npop} members", 0)
        if self.decisions["coarse"] is None:
            self.decisions["coarse"] = coarse_select(mean, self.sites)
            self.save_decisions()
            self.decided(f"coarse op selection: kept {sum(map(len, self.decisions['coarse']))} ops on {n} "
                         f"{self.space.site_kind}s")
        switches = self.fine_grained([list(s) for s in self.decisions["coarse"]])
        if self.sites.darts_cell:
            switches = self.topology(switches)
        arch = self.sites.architecture(switches)
        if self.decisions["arch"] is None:
            self.decisions["arch"] = self.space.arch_to_json(arch)
            self.save_decisions()
        self.logger.info(f"search finished; searching time this session {time.perf_counter() - t0:.0f}s")
        if self.sites.darts_cell:
            save_genotype(arch, self.folder / GENOTYPE)
            self.figure("cell", lambda: draw_cell(arch), 0, save=self.folder / "cell.png")
            self.logger.info(f"genotype={arch}")
            self.logger.info(f"wrote {self.folder / GENOTYPE} (train it: darts-master/train.py --arch "
                             f"{self.folder / GENOTYPE})")
        else:
            self.logger.info(f"architecture: {self.space.format_arch(arch)}")
        self.logger.close()
        return arch
