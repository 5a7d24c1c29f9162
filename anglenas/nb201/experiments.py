"""The NAS-Bench-201 experiments of the original (``NAS-Bench-201/exps/angle``), one run folder per seed.

1. :meth:`SupernetRun.train` trains the SPOS supernet (each cell samples its own path), keeping the weights at
   initialisation (``weights-epoch-0.pt``) and at every ``--eval_epochs`` epoch; a killed run resumes from
   ``checkpoint.pt`` after its last finished epoch.
2. At those epochs the angle of all 15,625 architectures (block decomposition) and their weight magnitude are
   ranked against the ground truth; after the last epoch the supernet accuracy with and without BN
   recalibration is measured on ``--acc_archs`` sampled architectures, next to random scores.
3. :func:`summarize` turns the seeds' records into Kendall tau / Spearman rho tables and figures.

Experiments 4 (operator dropping) and 5 (search) live in :mod:`anglenas.nb201.drop` and
:mod:`anglenas.nb201.search`, on the same trained supernets; the drop experiment's "magnitude" (the original's
DARTS architecture weight alpha) comes from a second supernet per seed, :class:`AlphaRun` in ``SAVE/seed-N/alpha``.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anglenas.abs.angle import ArchAngles, snapshot
from anglenas.checkpoint import (
    atomic_write_text,
    check_same_settings,
    check_writable,
    load_checkpoint,
    open_run,
    run_settings,
    save_checkpoint,
)
from anglenas.config import field, to_yaml
from anglenas.data.streams import TensorStream
from anglenas.errors import UserError
from anglenas.log import RunLogger
from anglenas.nb201.alpha import AlphaStep, RandomCellSampler, SinglePathView
from anglenas.nb201.api import DATASETS as GT_DATASETS
from anglenas.nb201.api import Benchmark
from anglenas.nb201.data import NB201Data, NB201DataConfig
from anglenas.nb201.drop import DROP_METRICS, FULL_OPS, drop_report, ground_truth_ranks, operator_scores
from anglenas.nb201.metrics import kendall_tau, random_scores, spearman_rho, supernet_accuracy
from anglenas.nb201.optim import SEMANTICS, update_every_parameter
from anglenas.nb201.search import evolve
from anglenas.runtime import use_threads
from anglenas.searchers.spos.evolution import Arch, EvolutionConfig
from anglenas.spaces.nb201.cells import NUM_ARCHS, NUM_EDGES, OPS, to_str
from anglenas.spaces.nb201.space import NB201_SPACE
from anglenas.spaces.nb201.supernet import upgrade_keys
from anglenas.train.dist import init_distributed
from anglenas.train.samplers import PathSampler
from anglenas.train.supernet import SupernetTrainConfig, SupernetTrainer

CHECKPOINT = "checkpoint.pt"
METRICS = ("angle", "magnitude", "random", "acc_rebn", "acc_no_rebn", "angle_acc_subset")
"""Scores ranked against the ground truth; the accuracy ones and ``angle_acc_subset`` on the sampled subset."""
RESUMABLE_FIELDS = ("device", "amp", "save", "benchmark", "epochs", "eval_epochs", "seeds", "base", "acc_archs",
                    "rebn_images", "eval_images", "eval_batch_size", "drop_num", "threads", "demo", "preset")
"""Settings that do not change a seed's trained supernet: a run resumes across them (to train longer, keep
--lr_horizon_epochs)."""


@dataclass
class NB201Config(NB201DataConfig, SupernetTrainConfig):
    """NB201 supernet training and angle / accuracy ranking (the defaults aim at one GPU)."""

    batch_size: int = field(256, "batch size", low=1)
    lr: float = field(0.1, "initial learning rate (linear decay to min_lr over lr_horizon_epochs)", low=0)
    min_lr: float = field(1e-3, "learning-rate floor", low=0)
    weight_decay: float = field(5e-4, "weight decay (original: every parameter; sampled_only: conv and classifier "
                                      "weights)", low=0)
    optimizer_semantics: str = field("original", "original: every parameter is stepped every step (Nesterov "
                                                 "momentum, decay on all, BN included), as the original's NB201 "
                                                 "trainer; sampled_only: only the sampled path moves",
                                     choices=SEMANTICS)
    label_smoothing: float = field(0.0, "label smoothing", low=0, high=1)
    seed: int = field(0, "first seed (seeds seed, seed+1, ...)", low=0)
    save: str = field("runs/nb201", "run folder (one seed-N sub-folder per seed)")
    benchmark: str = field("", "ground truth: official NB201 / NATS-Bench file or CSV (default: the shipped table)")
    channels: int = field(16, "channels of the first stage (NB201: 16)", low=1)
    cells_per_stage: int = field(5, "search cells per stage (NB201: 5)", low=1)
    epochs: int = field(30, "supernet training epochs", low=1)
    lr_horizon_epochs: int | None = field(None, "epochs over which the LR decays (default: --epochs)", low=1)
    eval_epochs: str = field("1,2,5,10,20,30", "epochs whose weights are kept and whose angles are ranked")
    seeds: int = field(1, "number of seeds", low=1)
    base: str = field("init", "base weights W0 of the angle: init (true initialisation) or epoch1 (the "
                              "original's 'epoch-0' checkpoint, saved after the first epoch)",
                      choices=("init", "epoch1"))
    acc_archs: int = field(300, "architectures whose supernet accuracy (with / without ReBN) is measured", low=0,
                           high=NUM_ARCHS)
    rebn_images: int = field(2000, "training images of the BN recalibration", low=1)
    eval_images: int = field(5000, "valid images of each accuracy measurement", low=1)
    eval_batch_size: int = field(500, "batch size of ReBN and evaluation", low=1)
    drop_num: int = field(20, "operators dropped in one round by drop_ops.py and for search.py's ABS space (every "
                              "edge keeps one)", low=0, high=NUM_EDGES * (len(OPS) - 1))
    demo: bool = field(False, "small settings on the embedded mini CIFAR-10: a few minutes on a CPU")
    preset: str | None = field(None, "named settings: cpu = the best angle tau on 2 CPU cores in 5 minutes a seed "
                                     "(real CIFAR-10; give --data_dir)", choices=(None, "cpu"),
                               presets=lambda: {"cpu": CPU})

    def checked(self) -> "NB201Config":
        """``self`` when the settings the ranges cannot express fit together (the eval epochs, the base)."""
        epochs = self.eval_epoch_list()
        if self.base == "epoch1" and 1 not in epochs:
            raise UserError("--base epoch1 needs epoch 1 in --eval_epochs")
        return self

    def eval_epoch_list(self) -> list[int]:
        try:
            epochs = sorted({int(e) for e in self.eval_epochs.split(",") if e.strip()})
        except ValueError:
            raise UserError(f"--eval_epochs must be comma-separated epoch numbers, got {self.eval_epochs!r}") from None
        bad = [e for e in epochs if not 1 <= e <= self.epochs]
        if bad:
            raise UserError(f"--eval_epochs {bad} outside 1..--epochs {self.epochs}")
        return sorted(set(epochs) | {self.epochs})


DEMO = dict(dataset="embedded", resolution=16, channels=8, cells_per_stage=1, batch_size=32, lr=0.1, epochs=10,
            eval_epochs="1,2,4,6,10", acc_archs=24, rebn_images=256, eval_images=256, eval_batch_size=128,
            save="runs/nb201-demo", amp=False, channels_last=False, threads=1)
"""``--demo``: the NB201 macro at C=8, N=1 on the embedded CIFAR-10 downscaled to 16x16, a CPU run of minutes."""

CPU = dict(dataset="cifar10-jpg", resolution=32, channels=16, cells_per_stage=2, batch_size=128, epochs=4,
           eval_epochs="1,2,3,4", optimizer_semantics="sampled_only", acc_archs=0, save="runs/nb201-cpu", amp=False,
           channels_last=True, threads=2)
"""``--preset cpu``: the angle's best Kendall tau found on 2 CPU cores within 5 minutes a seed, on the 25k real
CIFAR-10 training half (measurements in docs/nb201.md). At this small size the original's optimiser semantics
rank better after one epoch but worse after four (weight decay on every op shrinks the conv weights that carry
the ranking), so the preset trains only the sampled path."""


@dataclass
class NB201SearchConfig(NB201Config, EvolutionConfig):
    """Experiment 5: NB201 supernet settings plus the evolutionary search's."""

    def evolution(self) -> EvolutionConfig:
        return EvolutionConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(EvolutionConfig)})


SEARCH_DEMO = {**DEMO, "population_num": 10, "select_num": 4, "crossover_num": 4, "mutation_num": 4,
               "max_epochs": 3, "rebn_images": 128, "eval_images": 128}


def seed_config(cfg: NB201Config, seed: int) -> NB201Config:
    """The settings of one seed's supernet (checked on resume): this seed, the LR horizon resolved, the NB201 fields
    only (the search's extra fields do not change the supernet)."""
    own = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(NB201Config)}
    return dataclasses.replace(NB201Config(**own), seed=seed, lr_horizon_epochs=cfg.lr_horizon_epochs or cfg.epochs)


def seed_trainer(cfg: NB201Config, model: torch.nn.Module, sampler: PathSampler, stream: TensorStream,
                 device: torch.device, logger: RunLogger, **arch) -> SupernetTrainer:
    """The trainer of one seed's supernet: the LR decays over ``--lr_horizon_epochs`` (default ``--epochs``), with
    the optimiser semantics of ``--optimizer_semantics``; ``arch``: the trainer's ``arch_step`` / ``arch_stream``."""
    horizon = (cfg.lr_horizon_epochs or cfg.epochs) * stream.steps_per_epoch
    trainer = SupernetTrainer(model, sampler, stream, cfg, horizon, device, logger=logger, **arch)
    if cfg.optimizer_semantics == "original":
        trainer.optimizer = update_every_parameter(trainer.model, cfg.lr, cfg.momentum, cfg.weight_decay)
    return trainer


class SupernetRun:
    """Training and scoring of one seed's supernet in ``SAVE/seed-N``."""

    def __init__(self, cfg: NB201Config, seed: int, data: NB201Data, bench: Benchmark, device: torch.device,
                 logger: RunLogger) -> None:
        self.cfg, self.seed, self.data, self.bench, self.device, self.logger = cfg, seed, data, bench, device, logger
        self.dir = Path(cfg.save) / f"seed-{seed}"
        self.space = NB201_SPACE.sized(cfg.channels, cfg.cells_per_stage, data.input_size, data.num_classes)
        torch.manual_seed(seed)
        model = self.space.supernet()
        self.stream = data.train_stream(cfg.batch_size, seed, cfg.channels_last)
        self.steps_per_epoch = self.stream.steps_per_epoch
        sampler = self.space.train_sampler(self.space.initial_operations(), seed)
        self.trainer = seed_trainer(cfg, model, sampler, self.stream, device, logger)
        self.model = self.trainer.model
        self.epoch, self.records = 0, []
        self._resume()

    # -- checkpoints --------------------------------------------------------------------------------------------
    def _resume(self) -> None:
        run_cfg = seed_config(self.cfg, self.seed)
        ckpt = open_run(self.dir / CHECKPOINT, run_cfg, RESUMABLE_FIELDS, map_location=self.device)
        if ckpt is None:
            save_checkpoint(snapshot(self.model), self.dir / "weights-epoch-0.pt")
            return
        if "optimizer_semantics" not in ckpt["config"]:  # saved before the flag existed: trained sampled_only
            check_same_settings({"optimizer_semantics": "sampled_only"}, run_settings(run_cfg, RESUMABLE_FIELDS),
                                self.dir)
        self.trainer.load_state_dict(ckpt)
        self.epoch, self.records = ckpt["epoch"], ckpt["records"]
        self.logger.info(f"seed {self.seed}: resumed after epoch {self.epoch}")

    def _checkpoint(self) -> None:
        save_checkpoint({"config": run_settings(seed_config(self.cfg, self.seed), RESUMABLE_FIELDS),
                         "epoch": self.epoch, "records": self.records, **self.trainer.state_dict()},
                        self.dir / CHECKPOINT)

    def base_weights(self) -> dict[str, torch.Tensor]:
        name = "weights-epoch-0.pt" if self.cfg.base == "init" else "weights-epoch-1.pt"
        return upgrade_keys(load_checkpoint(self.dir / name, map_location=self.device))

    # -- experiment 1 and the per-epoch part of 2 ---------------------------------------------------------------
    def train(self) -> None:
        """Train to ``--epochs``, ranking the angle at every eval epoch (resumable after each epoch)."""
        evals, spe = self.cfg.eval_epoch_list(), self.steps_per_epoch

        def epoch_done(step: int) -> None:
            self.epoch = step // spe
            if self.epoch in evals:
                save_checkpoint(snapshot(self.model), self.dir / f"weights-epoch-{self.epoch}.pt")
                if self.epoch >= (1 if self.cfg.base == "init" else 2):
                    self.records.append(self.rank_weights())
            self._checkpoint()

        start, end = self.epoch * spe, self.cfg.epochs * spe
        if start < end:
            self.trainer.train(start, end, desc=f"seed {self.seed} supernet", checkpoint=epoch_done,
                               checkpoint_every=spe)
            epoch_done(end)

    def weight_scores(self) -> dict[str, np.ndarray]:
        """Angle and magnitude of every benchmark architecture (index order) for the current weights."""
        angles = ArchAngles(self.model, self.base_weights(), self.space)
        return {"angle": angles.angles(self.bench.cells).cpu().numpy(),
                "magnitude": angles.magnitudes(self.bench.cells).cpu().numpy()}

    def rank_weights(self) -> dict:
        t0 = time.perf_counter()
        scores = self.weight_scores()
        seconds = time.perf_counter() - t0
        record = {"epoch": self.epoch, "angle_seconds": seconds, "tau": {}, "rho": {}}
        for metric, values in scores.items():
            record["tau"][metric] = {d: kendall_tau(values, self.bench.accuracies(d)) for d in GT_DATASETS}
            record["rho"][metric] = {d: spearman_rho(values, self.bench.accuracies(d)) for d in GT_DATASETS}
        gt = self.data.ground_truth
        self.logger.info(f"seed {self.seed} epoch {self.epoch}: angles of {len(self.bench)} archs in {seconds:.3f}s; "
                         f"tau vs {gt}: angle {record['tau']['angle'][gt]:.3f}, "
                         f"magnitude {record['tau']['magnitude'][gt]:.3f}")
        for metric in scores:
            self.logger.scalar(f"seed{self.seed}/tau_{metric}", record["tau"][metric][gt], self.epoch)
        return record

    # -- final scores -------------------------------------------------------------------------------------------
    def acc_subset(self) -> np.ndarray:
        """Benchmark indices of the architectures whose supernet accuracy is measured (the same for all seeds)."""
        n = min(self.cfg.acc_archs, len(self.bench))
        return np.sort(np.random.default_rng(201).choice(len(self.bench), n, replace=False))

    def final_scores(self) -> dict[str, np.ndarray]:
        """Angle, magnitude (all archs) and supernet accuracy with / without ReBN (subset) of the trained
        supernet; cached in ``scores.npz`` with the settings that produced them."""
        cfg = self.cfg
        settings = {"epoch": self.epoch, "acc_archs": cfg.acc_archs, "rebn_images": cfg.rebn_images,
                    "eval_images": cfg.eval_images, "eval_batch_size": cfg.eval_batch_size, "base": cfg.base}
        path = self.dir / "scores.npz"
        if path.is_file():
            with np.load(path) as z:
                if json.loads(str(z["settings"])) == settings:
                    return {k: z[k] for k in z.files if k != "settings"}
        out = self.weight_scores()
        subset = self.acc_subset()
        val = self.data.valid_batches(cfg.eval_batch_size, cfg.eval_images, cfg.channels_last)
        rebn = self.data.rebn_batches(cfg.eval_batch_size, cfg.rebn_images, cfg.channels_last)
        amp = self.trainer.amp
        progress = self.logger.progress(f"seed {self.seed} supernet accuracy", len(subset))
        acc = np.zeros((2, len(subset)))
        for k, index in enumerate(subset):
            cell = tuple(self.bench.cells[index])
            acc[0, k] = supernet_accuracy(self.model, cell, val, None, amp)
            acc[1, k] = supernet_accuracy(self.model, cell, val, rebn, amp)
            progress.update(1, no_rebn=acc[0, k], rebn=acc[1, k])
        out.update(acc_subset=subset, acc_no_rebn=acc[0], acc_rebn=acc[1])
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, settings=json.dumps(settings), **out)
        tmp.replace(path)
        return out


class AlphaRun:
    """The original's "magnitude" of the drop experiment: one seed's DARTS-alpha supernet in ``SAVE/seed-N/alpha``
    (:mod:`anglenas.nb201.alpha`), trained on the same data, batch size, LR schedule and optimiser semantics as
    :class:`SupernetRun`; the weights follow a fully random single path and alpha takes one first-order DARTS
    step on a validation batch before each weight step. Resumable after each epoch; the checkpoint holds alpha
    and its optimiser."""

    def __init__(self, cfg: NB201Config, seed: int, data: NB201Data, device: torch.device, logger: RunLogger) -> None:
        self.cfg, self.seed, self.device, self.logger = cfg, seed, device, logger
        self.dir = Path(cfg.save) / f"seed-{seed}" / "alpha"
        space = NB201_SPACE.sized(cfg.channels, cfg.cells_per_stage, data.input_size, data.num_classes)
        torch.manual_seed(seed)
        net = space.relaxed_supernet(space.initial_operations()).to(device)
        self.alphas = AlphaStep(net)
        stream = data.train_stream(cfg.batch_size, seed, cfg.channels_last)
        if len(data.valid_y) < cfg.batch_size:
            raise UserError(f"the valid set has {len(data.valid_y)} images, fewer than --batch_size {cfg.batch_size}")
        valid = TensorStream(data.valid_x, data.valid_y, cfg.batch_size, seed + 10_000, data.normalize, pad=data.pad,
                             channels_last=cfg.channels_last)
        self.steps_per_epoch = stream.steps_per_epoch
        self.trainer = seed_trainer(cfg, SinglePathView(net), RandomCellSampler(seed), stream, device, logger,
                                    arch_step=self.alphas, arch_stream=valid)
        self.epoch = 0
        ckpt = open_run(self.dir / CHECKPOINT, seed_config(cfg, seed), RESUMABLE_FIELDS, map_location=device)
        if ckpt is not None:
            self.trainer.load_state_dict(ckpt)
            self.alphas.load_state_dict(ckpt["alpha"])
            self.epoch = ckpt["epoch"]
            logger.info(f"seed {seed} alpha: resumed after epoch {self.epoch}")

    def _checkpoint(self) -> None:
        save_checkpoint({"config": run_settings(seed_config(self.cfg, self.seed), RESUMABLE_FIELDS),
                         "epoch": self.epoch, **self.trainer.state_dict(), "alpha": self.alphas.state_dict()},
                        self.dir / CHECKPOINT)

    def train(self) -> dict[tuple[int, int], float]:
        """Train to ``--epochs``; returns softmax(alpha)[edge, op] of every operator."""
        spe = self.steps_per_epoch

        def epoch_done(step: int) -> None:
            self.epoch = step // spe
            self._checkpoint()

        start, end = self.epoch * spe, self.cfg.epochs * spe
        if start < end:
            self.trainer.train(start, end, desc=f"seed {self.seed} DARTS alpha", checkpoint=epoch_done,
                               checkpoint_every=spe)
            epoch_done(end)
        return self.alphas.operator_scores()


def final_taus(scores: dict[str, np.ndarray], bench: Benchmark, seed: int) -> dict[str, dict[str, dict]]:
    """{"tau" | "rho": {metric: {gt dataset: value}}} of one seed's final scores."""
    subset = scores["acc_subset"]
    ranked = {"angle": (scores["angle"], slice(None)), "magnitude": (scores["magnitude"], slice(None)),
              "random": (random_scores(len(bench), seed), slice(None))}
    if len(subset) > 1:
        ranked.update(acc_rebn=(scores["acc_rebn"], subset), acc_no_rebn=(scores["acc_no_rebn"], subset),
                      angle_acc_subset=(scores["angle"][subset], subset))
    out: dict[str, dict[str, dict]] = {"tau": {}, "rho": {}}
    for metric, (values, index) in ranked.items():
        out["tau"][metric] = {d: kendall_tau(values, bench.accuracies(d)[index]) for d in GT_DATASETS}
        out["rho"][metric] = {d: spearman_rho(values, bench.accuracies(d)[index]) for d in GT_DATASETS}
    return out


def _mean_std(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v)), "min": float(np.nanmin(v)),
            "max": float(np.nanmax(v))}


def summarize(per_seed: dict[int, dict], records: dict[int, list[dict]], ground_truth: str) -> dict:
    """Mean / std over seeds of every metric's tau and rho, per ground-truth dataset, and tau per epoch."""
    seeds = sorted(per_seed)
    metrics = [m for m in METRICS if all(m in per_seed[s]["tau"] for s in seeds)]
    table = {kind: {m: {d: _mean_std([per_seed[s][kind][m][d] for s in seeds]) for d in GT_DATASETS}
                    for m in metrics} for kind in ("tau", "rho")}
    epochs = sorted({r["epoch"] for s in seeds for r in records[s]})
    per_epoch = {m: {str(e): _mean_std([r["tau"][m][ground_truth] for s in seeds for r in records[s]
                                         if r["epoch"] == e]) for e in epochs} for m in ("angle", "magnitude")}
    return {"ground_truth": ground_truth, "seeds": seeds, "table": table, "per_epoch": per_epoch,
            "per_seed": {str(s): per_seed[s] for s in seeds}}


def markdown_table(summary: dict) -> str:
    """The tau (mean +- std over seeds) of every metric against each ground truth, as a Markdown table."""
    lines = ["| metric | " + " | ".join(f"tau {d}" for d in GT_DATASETS) + " |",
             "|---|" + "---|" * len(GT_DATASETS)]
    for metric, cols in summary["table"]["tau"].items():
        lines.append(f"| {metric} | " + " | ".join(f"{c['mean']:.3f} ± {c['std']:.3f}" for c in cols.values()) + " |")
    return "\n".join(lines)


class Experiment:
    """Shared setup of the NB201 entry points: device, data, ground truth, one :class:`SupernetRun` per seed."""

    def __init__(self, cfg: NB201Config) -> None:
        self.cfg = cfg.checked()
        check_writable(cfg.save, "run folder", "--save")
        threads = use_threads(cfg.threads)
        _, self.device = init_distributed(cfg.device)
        self.save = Path(cfg.save)
        self.bench = Benchmark.load(cfg.benchmark or None)
        self.data = NB201Data(cfg, self.device)
        self.data.train_stream(cfg.batch_size, cfg.seed)  # refuses a batch larger than the training set
        self.logger = RunLogger(self.save)  # after the inputs are checked: none leaves a folder
        atomic_write_text(self.save / "config.yaml", to_yaml(cfg))
        self.logger.info(f"NB201 on {cfg.dataset} ({len(self.data.train_y)} train / {len(self.data.valid_y)} valid, "
                         f"{self.data.input_size}px) on {self.device}, {threads} CPU thread(s); ground truth "
                         f"{self.bench.source}")

    def runs(self):
        """The trained :class:`SupernetRun` of each seed, one after the other."""
        for seed in range(self.cfg.seed, self.cfg.seed + self.cfg.seeds):
            run = SupernetRun(self.cfg, seed, self.data, self.bench, self.device, self.logger)
            run.train()
            yield run

    def angle_tau(self) -> dict:
        """Experiments 1-3: writes SAVE/tau.json (metric -> mean tau vs the training set's ground truth),
        SAVE/tau_table.json (everything), SAVE/tau.md and the figures; returns the summary."""
        from anglenas.nb201.figures import plot_angle_vs_accuracy, plot_tau_per_epoch

        t0 = time.perf_counter()
        per_seed, records, last = {}, {}, None
        for run in self.runs():
            scores = run.final_scores()
            per_seed[run.seed], records[run.seed], last = final_taus(scores, self.bench, run.seed), run.records, scores
        gt = self.data.ground_truth
        summary = summarize(per_seed, records, gt)
        summary.update(wall_seconds=time.perf_counter() - t0, config=dataclasses.asdict(self.cfg),
                       angle_seconds=[r["angle_seconds"] for rs in records.values() for r in rs])
        tau = {m: cols[gt]["mean"] for m, cols in summary["table"]["tau"].items()}
        atomic_write_text(self.save / "tau.json", json.dumps(tau, indent=1) + "\n")
        atomic_write_text(self.save / "tau_table.json", json.dumps(summary, indent=1) + "\n")
        table = markdown_table(summary)
        atomic_write_text(self.save / "tau.md", table + "\n")
        fig = plot_tau_per_epoch(summary["per_epoch"], gt, self.save / "tau_per_epoch.png")
        self.logger.figure("nb201/tau_per_epoch", fig, self.cfg.epochs)
        fig = plot_angle_vs_accuracy(last["angle"], self.bench.accuracies(gt), gt, self.save / "angle_vs_accuracy.png")
        self.logger.figure("nb201/angle_vs_accuracy", fig, self.cfg.epochs)
        self.logger.info(f"Kendall tau over {len(per_seed)} seed(s) ({time.perf_counter() - t0:.0f}s):\n{table}")
        return summary

    def drop_ops(self) -> dict:
        """Experiment 4: writes SAVE/drop.json and prints what each metric keeps; returns the report."""
        gt = self.data.ground_truth
        accuracy, cells = self.bench.accuracies(gt), self.bench.cells
        gt_ranks = ground_truth_ranks(accuracy, cells)
        best = [tuple(cells[i]) for i in np.flatnonzero(accuracy == accuracy.max())]
        report: dict = {"ground_truth": gt, "gt_operator_ranks": {f"{e},{OPS[o]}": r for (e, o), r in gt_ranks.items()},
                        "best_cells": [to_str(c) for c in best], "seeds": [], "metrics": {m: [] for m in DROP_METRICS}}
        for run in self.runs():
            scores = run.final_scores()
            report["seeds"].append(run.seed)
            subset = scores["acc_subset"]
            sources = {"angle": operator_scores(scores["angle"], cells),
                       "acc_no_rebn": operator_scores(scores["acc_no_rebn"], cells[subset]),
                       "magnitude": AlphaRun(self.cfg, run.seed, self.data, self.device, self.logger).train(),
                       "weight_norm": operator_scores(scores["magnitude"], cells)}
            for metric, op_scores in sources.items():
                rec = drop_report(op_scores, gt_ranks, best, self.cfg.drop_num)
                rec["scores"] = {f"{e},{OPS[o]}": v for (e, o), v in op_scores.items()}
                report["metrics"][metric].append(rec)
                self.logger.info(f"seed {run.seed} drop {self.cfg.drop_num} by {metric}: keeps {rec['top10_kept']} "
                                 f"of the top-10 operators (GT ranks {rec['kept_gt_ranks']}), best architecture "
                                 f"{'survives' if rec['best_survives'] else 'dropped'}, {rec['space_size']} cells left")
        report["summary"] = {m: {"top10_kept_mean": float(np.mean([r["top10_kept"] for r in recs])),
                                 "best_survives": sum(r["best_survives"] for r in recs), "runs": len(recs)}
                             for m, recs in report["metrics"].items()}
        atomic_write_text(self.save / "drop.json", json.dumps(report, indent=1) + "\n")
        return report

    def search(self, evolution: EvolutionConfig) -> dict:
        """Experiment 5: SPOS search in the full and in the angle-shrunk space; writes SAVE/search.json."""
        gt = self.data.ground_truth
        accuracy = self.bench.accuracies(gt)
        out: dict = {"ground_truth": gt, "runs": []}
        for run in self.runs():
            scores = run.final_scores()
            shrunk = drop_report(operator_scores(scores["angle"], self.bench.cells), ground_truth_ranks(
                accuracy, self.bench.cells), [], self.cfg.drop_num)["kept"]
            val = self.data.valid_batches(self.cfg.eval_batch_size, self.cfg.eval_images, self.cfg.channels_last)
            rebn = self.data.rebn_batches(self.cfg.eval_batch_size, self.cfg.rebn_images, self.cfg.channels_last)

            def score(arch: Arch) -> float:
                return supernet_accuracy(run.model, tuple(arch), val, rebn, run.trainer.amp)

            rec: dict = {"seed": run.seed}
            for name, ops in (("full", FULL_OPS), ("abs", shrunk)):
                self.logger.info(f"seed {run.seed}: SPOS search in the {name} space {ops}")
                results = evolve(ops, evolution, run.seed, score, run.dir / f"search-{name}.json", self.logger)
                arch = max(results, key=lambda a: (results[a], a))
                index = self.bench.query_index_by_arch(arch)
                in_space = np.all([np.isin(self.bench.cells[:, e], ops[e]) for e in range(len(ops))], axis=0)
                rec[name] = {"ops": ops, "arch": to_str(arch), "index": index, "supernet_top1": results[arch],
                             "gt_accuracy": {d: self.bench.accuracy(index, d) for d in GT_DATASETS},
                             "evaluated": len(results), "space_size": int(in_space.sum()),
                             "space_best_gt": float(accuracy[in_space].max())}
                self.logger.info(f"seed {run.seed} {name} space: found {to_str(arch)} (index {index}), "
                                 f"{gt} test accuracy {accuracy[index]:.2f} (best in this space "
                                 f"{rec[name]['space_best_gt']:.2f}) after {len(results)} evaluations")
            out["runs"].append(rec)
        out["summary"] = {name: {"gt_mean": float(np.mean([r[name]["gt_accuracy"][gt] for r in out["runs"]])),
                                 "gt_std": float(np.std([r[name]["gt_accuracy"][gt] for r in out["runs"]]))}
                          for name in ("full", "abs")}
        atomic_write_text(self.save / "search.json", json.dumps(out, indent=1) + "\n")
        return out
