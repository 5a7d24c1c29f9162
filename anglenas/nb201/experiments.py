"""The NAS-Bench-201 experiments of the original (``NAS-Bench-201/exps/angle``), one run folder per seed.

1. :meth:`SupernetRun.train` trains the SPOS supernet (each cell samples its own path), keeping the weights at
   initialisation (``weights-epoch-0.pt``) and at every ``--eval_epochs`` epoch; a killed run resumes from
   ``checkpoint.pt`` after its last finished epoch.
2. At those epochs the angle of all 15,625 architectures (block decomposition) and their weight magnitude are
   ranked against the ground truth; after the last epoch the supernet accuracy with and without BN
   recalibration is measured on ``--acc_archs`` sampled architectures, next to random scores.
3. :func:`anglenas.nb201.tau_table.summarize` turns the seeds' records into Kendall tau / Spearman rho tables
   and figures.

Experiments 4 (operator dropping) and 5 (search) live in :mod:`anglenas.nb201.drop` and
:mod:`anglenas.nb201.search`, on the same trained supernets; the drop experiment's "magnitude" (the original's
DARTS architecture weight alpha) comes from a second supernet per seed, :class:`AlphaRun` in ``SAVE/seed-N/alpha``.
"""
from __future__ import annotations

import dataclasses
import json
import time
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
from anglenas.config import to_yaml
from anglenas.data.streams import TensorStream
from anglenas.errors import UserError
from anglenas.log import RunLogger
from anglenas.nb201.alpha import AlphaStep, RandomCellSampler, SinglePathView
from anglenas.nb201.api import DATASETS as GT_DATASETS
from anglenas.nb201.api import Benchmark
from anglenas.nb201.data import NB201Data
from anglenas.nb201.drop import DROP_METRICS, FULL_OPS, drop_report, ground_truth_ranks, operator_scores
from anglenas.nb201.metrics import kendall_tau, spearman_rho, supernet_accuracy
from anglenas.nb201.optim import update_every_parameter
from anglenas.nb201.search import evolve
from anglenas.nb201.settings import RESUMABLE_FIELDS, NB201Config, seed_config
from anglenas.nb201.tau_table import final_taus, markdown_table, summarize
from anglenas.runtime import use_threads
from anglenas.searchers.spos.evolution import Arch, EvolutionConfig
from anglenas.spaces.nb201.cells import OPS, to_str
from anglenas.spaces.nb201.space import NB201_SPACE
from anglenas.spaces.nb201.supernet import upgrade_keys
from anglenas.train.dist import init_distributed
from anglenas.train.samplers import PathSampler
from anglenas.train.supernet import SupernetTrainer

CHECKPOINT = "checkpoint.pt"
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
