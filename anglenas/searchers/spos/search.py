"""The SPOS, FairNAS and RSPS searchers: train a supernet restricted to the operations file, then search it with
candidates scored on held-out images. All three are registered searchers over :class:`SearchConfig`;
``--method`` (or ``--searcher``) picks one and its defaults.

SPOS (Guo et al. 2020) trains the supernet with the space's single-path sampler and evolves architectures;
FairNAS (Chu et al. 2021) trains it with strict fairness (every op of every layer once per step, which needs equal
op counts per layer); RSPS, random search with weight sharing (Li and Talwalkar 2019, as NAS-Bench-201 runs it),
trains it like SPOS and scores ``population_num * max_epochs`` random architectures (an evolution without
crossover and mutation). The weights (``SAVE/supernet.pt``) are what evaluators load. The
evolutionary search then scores candidates through an in-process evaluator (optionally N local workers) or
RabbitMQ test servers. Every result is appended to ``SAVE/evaluations.jsonl`` the moment it arrives and the
search state is saved after every generation, so a killed search restarted with the same arguments continues
where it stopped and evaluates no candidate twice. The result is ``SAVE/search_result.json`` plus
``SAVE/search_generations.png``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from anglenas.checkpoint import atomic_write_text, check_same_settings, open_run, run_settings, save_checkpoint
from anglenas.config import SizeConfig, field, override
from anglenas.data import DataConfig, build_data
from anglenas.errors import UserError
from anglenas.log import RunLogger
from anglenas.nn.init import init_weights
from anglenas.operations import Operations
from anglenas.plots import plot_search_generations
from anglenas.runtime import use_threads
from anglenas.search_result import SearchResult
from anglenas.searchers.registry import SearchInputConfig, register_searcher
from anglenas.searchers.spos.evaluate import CandidateEvaluator, EvalSettings, InProcessEvaluator, LocalPoolEvaluator
from anglenas.searchers.spos.evolution import Arch, EvolutionConfig, EvolutionSearch
from anglenas.searchers.spos.journal import Journal, read_journal, read_search_state
from anglenas.searchers.spos.messages import weights_fingerprint
from anglenas.searchers.spos.mq import BrokerConfig, check_broker
from anglenas.spaces import reference_table
from anglenas.spaces.base import SearchSpace
from anglenas.train.dist import barrier, init_distributed
from anglenas.train.samplers import FairPathSampler, PathSampler
from anglenas.train.supernet import SupernetTrainConfig, SupernetTrainer

WEIGHTS, TRAIN_CHECKPOINT, STATE, JOURNAL = (
    "supernet.pt", "supernet_checkpoint.pt", "search_state.json", "evaluations.jsonl")
SPOS = dict(batch_size=512, lr=0.25, min_lr=0.0, seed=0, min_flops=None, max_flops=None)
"""The SPOS searcher's defaults (the original's ``SPOS/searching/main.py``); the FLOPs ceiling is the space's (475M in
the GPU space, 330M in ShuffleNetV2's)."""
FAIRNAS = dict(batch_size=1024, lr=0.5, min_lr=0.0, seed=0, min_flops=None, max_flops=None,
               demo=dict(uneven_fairness=True))
"""The FairNAS searcher's defaults; its FLOPs window is the fairnas space's (the original's 315M-327M in real
FLOPs: 302.15M-314.15M, its table over-counted the stem by 12.85M). Its ``--demo`` runs on every space it fits,
those whose layers hold unequal op counts (the gpu space's identity) too: ``--uneven_fairness``."""
RSPS = dict(SPOS, population_num=100, max_epochs=1, crossover_num=0, mutation_num=0)
"""RSPS: SPOS' supernet, then 100 random architectures (NAS-Bench-201's RSPS samples 100)."""
METHODS = {"spos": SPOS, "fairnas": FAIRNAS, "rsps": RSPS}
# fields that may change between a run and its resumption (they do not change the result)
RESUMABLE_CHANGES = {"workers", "device", "checkpoint_every", "checkpoint_minutes", "save", "demo", "amp", "backend",
                     "local_workers",
                     "eval_threads", "train_dir", "test_dir", "data_dir", "decode", "resend_after",
                     *(f.name for f in dataclasses.fields(BrokerConfig))}


@dataclass
class SearchConfig(BrokerConfig, EvolutionConfig, SupernetTrainConfig, DataConfig, SizeConfig, SearchInputConfig):
    """Supernet training in the shrunk space and evolutionary search; ``--method`` sets the searcher's defaults
    (batch size, LR, seed, FLOPs window, evolution), which flags still override."""

    method: str = field("spos", "spos: single path, evolution, FLOPs <= 475M, batch 512, lr 0.25; fairnas: strict "
                                "fairness, 302.15M-314.15M real FLOPs, batch 1024, lr 0.5; rsps: single path, 100 "
                                "random candidates", choices=tuple(METHODS), presets=lambda: METHODS)
    save: str = override("runs/search")
    epochs: int = field(100, "supernet epochs (FairNAS runs epochs * steps_per_epoch / m steps of m paths)", low=0)
    init: str = field("default", "supernet weight init (the original keeps PyTorch's default here)",
                      choices=("default", "he_fanout"))
    zero_init_residual: bool = field(False, "start every residual MBConv block as the identity (last BN gamma = 0; "
                                            "not in the original; the CPU demo's supernet needs it to learn)")
    min_flops: float | None = field(None, "FLOPs floor of candidates, real FLOPs at the paper's size (default: the "
                                          "space's: fairnas 302.15e6, else 0)", low=0)
    max_flops: float | None = field(None, "FLOPs ceiling of candidates, real FLOPs at the paper's size (default: "
                                          "the space's: gpu 475e6, fairnas 314.15e6, shufflenetv2 330e6)", low=0)
    topk: int = field(2, "architectures written to search_result.json", low=1)
    bn_images: int = field(10240, "training images for each candidate's exact BN recalibration", low=1)
    bn_batch_size: int = field(256, "batch size of the BN recalibration (bn_images must be a multiple)", low=1)
    val_images: int | None = field(None, "search-val images scored per candidate, a fixed random subset (default: "
                                         "all)", low=1)
    eval_batch_size: int = field(200, "batch size of candidate evaluation", low=1)
    backend: str = field("local", "candidate evaluation: local (this machine) or rabbitmq (test servers)",
                         choices=("local", "rabbitmq"))
    local_workers: int = field(0, "local backend: worker processes (0: evaluate in this process)", low=0)
    eval_threads: int = field(0, "CPU threads of local evaluation (per worker; 0: in this process --threads', with "
                                 "--local_workers each worker's share of the cores this process may use)", low=0)
    resend_after: float = field(0.0, "rabbitmq: re-publish a request with no result after this many seconds "
                                     "(0: never; requests are durable and redelivered by the broker)", low=0)
    checkpoint_every: int = field(0, "supernet steps between checkpoints (0: every epoch)", low=0)
    supernet: str = field("", "search with these supernet weights (the supernet.pt of another search of the same "
                              "space, size and data, e.g. SPOS' for RSPS) instead of training one")
    uneven_fairness: bool = field(False, "FairNAS over layers with unequal op counts: a layer with fewer ops repeats "
                                         "them to fill the step's paths (the original needs equal counts)")

    def eval_settings(self, space_name: str) -> EvalSettings:
        return EvalSettings(space_name, self.width_mult, self.stem_stride, self.depth, self.input_size, self.dataset,
                            self.resolution, self.train_limit, self.search_val_size, self.split_seed, self.bn_images,
                            self.bn_batch_size, self.seed, self.val_images, self.eval_batch_size)


DEMO = dict(dataset="embedded", width_mult=0.25, stem_stride=1, batch_size=64, lr=0.1, epochs=5, bn_images=128,
            bn_batch_size=64, population_num=12, select_num=4, crossover_num=4, mutation_num=4, max_epochs=4,
            topk=3, workers=0, device="cpu", zero_init_residual=True, save="runs/search-demo")
"""``--demo``: SPOS on the embedded 32x32 CIFAR-10 at width 0.25 (stem stride 1, residual blocks starting as the
identity, as the shrinking demo), 5 supernet epochs, 4 generations of 12; about a minute on 2 idle CPU cores."""


def make_sampler(method: str, ops: list[list[int]], seed: int, space: SearchSpace, uneven: bool = False
                 ) -> PathSampler:
    """SPOS, RSPS: the space's single-path sampler over ``ops``; FairNAS: strict fairness (equal op counts per
    layer, or ``uneven``)."""
    if method != "fairnas":
        return space.train_sampler(ops, seed)
    counts = sorted({len(layer) for layer in ops})
    if len(counts) != 1 and not uneven:
        raise UserError(f"FairNAS strict fairness needs the same number of ops in every layer, but the operations "
                        f"file has {counts} ops per layer; shrink with --drop_rule per_layer (the FairNAS setting), "
                        f"pass --uneven_fairness, or search with --method spos")
    return FairPathSampler(ops, seed, uneven)


class Search:
    """One search of :class:`SearchConfig` in ``operations``; ``run()`` returns its :class:`SearchResult`."""

    def __init__(self, cfg: SearchConfig, operations: Operations) -> None:
        self.cfg = cfg
        self.operations = operations
        self.ref_space = self.operations.space
        self.cfg = cfg = dataclasses.replace(
            cfg, min_flops=self.ref_space.search_min_flops if cfg.min_flops is None else cfg.min_flops,
            max_flops=self.ref_space.search_max_flops if cfg.max_flops is None else cfg.max_flops)
        make_sampler(cfg.method, self.operations.ops, cfg.seed, self.ref_space, cfg.uneven_fairness)  # refuse early
        self.table = reference_table(self.ref_space.name)
        self.env, self.device = init_distributed(cfg.device)
        self.save = Path(cfg.save)
        self.logger = RunLogger(self.save, self.env.is_main)
        self.logger.info(f"{cfg.method} in the {self.ref_space.name} space on {self.device}, "
                         f"{use_threads(cfg.threads)} CPU thread(s)")
        if cfg.backend == "rabbitmq" and self.env.is_main:  # a wrong password now, not after supernet training
            check_broker(cfg, self.logger.info)
        self.settings = cfg.eval_settings(self.ref_space.name)
        self.settings.check()

    # -- configuration checks -----------------------------------------------------------------------------------
    def _semantic_config(self) -> dict:
        return run_settings(self.cfg, RESUMABLE_CHANGES)

    # -- stage 1: supernet --------------------------------------------------------------------------------------
    def train_supernet(self) -> Path:
        """Train (or resume training) the supernet, or take ``--supernet``; returns the weights file."""
        cfg, weights, ckpt_path = self.cfg, self.save / WEIGHTS, self.save / TRAIN_CHECKPOINT
        if cfg.supernet:
            given = Path(cfg.supernet)
            if not given.is_file():
                raise UserError(f"--supernet {given} does not exist; give the supernet.pt of a search of the same "
                                f"space, size and data")
            self.logger.info(f"supernet weights from {given} (no supernet training)")
            return given
        ckpt = open_run(ckpt_path, cfg, RESUMABLE_CHANGES, self.env.is_main, self.device)
        if ckpt is not None and weights.is_file():
            return weights
        data = build_data(cfg, self.device, held_out=True)
        space = cfg.sized(self.ref_space, data)
        self.sampler = make_sampler(cfg.method, self.operations.ops, cfg.seed, space, cfg.uneven_fairness)
        torch.manual_seed(cfg.seed)
        model = space.supernet()
        init_weights(model, cfg.init, cfg.zero_init_residual)
        stream = data.train_stream(cfg.batch_size, cfg.seed, self.env.rank, self.env.world, cfg.channels_last)
        paths_per_step = len(self.sampler.paths(0))
        total = max(cfg.epochs * stream.steps_per_epoch // paths_per_step, 0)
        trainer = SupernetTrainer(model, self.sampler, stream, cfg, max(total, 1), self.device, self.env,
                                  self.logger)
        start = 0
        if ckpt is not None:
            trainer.load_state_dict(ckpt)
            start = ckpt["step"]
            self.logger.info(f"resumed supernet training at step {start}/{total}")

        def checkpoint(step: int) -> None:
            if self.env.is_main:
                save_checkpoint({"config": self._semantic_config(), "step": step, **trainer.state_dict()}, ckpt_path)
            barrier(self.env)

        self.logger.info(f"{cfg.method} supernet in {self.operations.size:.3g} architectures: {total} steps of "
                         f"{paths_per_step} path(s), batch {cfg.batch_size}, world {self.env.world}, {self.device}")
        trainer.train(start, total, desc="supernet", checkpoint=checkpoint,
                      checkpoint_every=cfg.checkpoint_every or stream.steps_per_epoch)
        if self.env.is_main:  # weights first, then the finished checkpoint that marks them complete
            save_checkpoint({"model": trainer.model.state_dict()}, weights)
        checkpoint(total)
        return weights

    # -- stage 2: evolution -------------------------------------------------------------------------------------
    def _legal(self, arch: Arch) -> bool:
        flops = self.table.arch_flops(arch)
        return self.cfg.min_flops <= flops <= self.cfg.max_flops

    def _evaluator(self, weights: Path, fingerprint: str, journal: Journal, pending: dict[Arch, str], progress):
        cfg = self.cfg
        if cfg.backend == "rabbitmq":
            from anglenas.searchers.spos.mq import RabbitEvaluator

            return RabbitEvaluator(BrokerConfig(**{f.name: getattr(cfg, f.name)
                                                   for f in dataclasses.fields(BrokerConfig)}),
                                   str(weights.resolve()), fingerprint, self.settings.to_dict(), self.logger,
                                   on_sent=journal.sent, pending=pending, resend_after=cfg.resend_after,
                                   progress=progress)
        if cfg.local_workers > 0:
            return LocalPoolEvaluator(self.settings, cfg, self.device, weights, cfg.local_workers, cfg.eval_threads,
                                      progress)
        if cfg.eval_threads:
            torch.set_num_threads(cfg.eval_threads)
        return InProcessEvaluator(CandidateEvaluator(self.settings, cfg, self.device), weights, progress)

    def search(self, weights: Path) -> SearchResult:
        cfg = self.cfg
        fingerprint = weights_fingerprint(weights)
        results, pending = read_journal(self.save / JOURNAL, fingerprint)
        state = None
        saved = read_search_state(self.save / STATE)
        if saved is not None:
            check_same_settings(saved["config"], self._semantic_config(), self.save)
            if saved["fingerprint"] == fingerprint:
                state = saved["search"]
        evo = EvolutionSearch(self.operations.ops, cfg, cfg.seed, self._legal, state, results)
        if state is not None or results:
            self.logger.info(f"resumed the search at generation {evo.epoch} with {len(results)} results "
                             f"({len(pending)} requests still out)")
        journal = Journal(self.save / JOURNAL, fingerprint)
        rate = {"n": 0, "t0": time.perf_counter()}

        def tick() -> None:
            rate["n"] += 1

        evaluator = self._evaluator(weights, fingerprint, journal, pending, tick)
        try:
            while not evo.done:
                self._save_state(evo, fingerprint)
                t0, n0 = time.perf_counter(), rate["n"]
                evo.step(evaluator, journal.result)
                rec = evo.history[-1]
                done = rate["n"] - n0
                per = (time.perf_counter() - t0) / done if done else 0.0
                eta = (time.perf_counter() - t0) * (cfg.max_epochs - evo.epoch)
                self.logger.info(f"generation {rec['epoch'] + 1}/{cfg.max_epochs}: {done} evaluated "
                                 f"({per:.2f} s/candidate), best {rec['best']:.2f}, mean {rec['mean']:.2f}, "
                                 f"top1 so far {rec['top1_so_far']:.2f} | ETA {eta:.0f}s")
                self.logger.scalar("search/best", rec["best"], rec["epoch"])
                self.logger.scalar("search/mean", rec["mean"], rec["epoch"])
            self._save_state(evo, fingerprint)
            if evo.epoch < cfg.max_epochs:
                self.logger.info(f"every legal architecture of the space evaluated ({len(evo.results)}) after "
                                 f"{evo.epoch} generation(s)")
        finally:
            journal.close()
            close = getattr(evaluator, "close", None)
            if close is not None:
                close()
        return self._result(evo)

    def _save_state(self, evo: EvolutionSearch, fingerprint: str) -> None:
        atomic_write_text(self.save / STATE, json.dumps({"config": self._semantic_config(), "fingerprint": fingerprint,
                                                          "search": evo.state()}) + "\n")

    def _result(self, evo: EvolutionSearch) -> SearchResult:
        best = evo.best()
        fig = plot_search_generations(evo.history, self.save / "search_generations.png")
        self.logger.figure("search/generations", fig, len(evo.history))
        arch, top1 = best[0]
        self.logger.info(f"best architecture: {self.ref_space.format_arch(arch)} top1 {top1:.2f}% "
                         f"{self.table.arch_flops(arch) / 1e6:.1f}M FLOPs; {len(evo.results)} candidates evaluated")
        return SearchResult(searcher=self.cfg.method, space=self.ref_space.name, archs=[list(a) for a, _ in best],
                            scores=[acc for _, acc in best], score_name="supernet top-1 on search-val (%)",
                            arch_details=[{"top1": acc} for _, acc in best],  # the name of version 1
                            operations=self.operations.ops,
                            cost={"device": str(self.device), "supernet_epochs": self.cfg.epochs,
                                  "evaluations": len(evo.results)},
                            details={"flops_limits": [self.cfg.min_flops or None, self.cfg.max_flops],
                                     "generations": evo.history})

    def run(self) -> SearchResult | None:
        weights = self.train_supernet()
        if not self.env.is_main:
            return None
        return self.search(weights)


def run_evolution(cfg: SearchConfig, operations: Operations) -> SearchResult | None:
    """Supernet training then evolutionary (or random) search; ``cfg.method`` is the searcher."""
    return Search(cfg, operations).run()


register_searcher("spos", SearchConfig, "supernet", "gpu", {"method": "spos"}, {"demo": DEMO},
                  "SPOS: uniform single-path supernet, evolutionary search under a FLOPs ceiling")(run_evolution)
register_searcher("fairnas", SearchConfig, "supernet", "fairnas", {"method": "fairnas"}, {"demo": DEMO},
                  "FairNAS: strict-fairness supernet, evolutionary search in the space's FLOPs window")(run_evolution)
register_searcher("rsps", SearchConfig, "supernet", "gpu", {"method": "rsps"},
                  {"demo": {**DEMO, "population_num": 24, "max_epochs": 1}},
                  "RSPS: uniform single-path supernet, random search with weight sharing")(run_evolution)
