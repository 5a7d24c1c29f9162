"""Training a found architecture from scratch, and evaluating a checkpoint (the original's
``*/training/train_from_scratch.py``).

The defaults are the paper's ImageNet recipe: 300k iterations at global batch 1024, SGD lr 0.5 momentum 0.9
decaying linearly to 0, weight decay 4e-5 on conv / classifier weights only, label smoothing 0.1, gradient-norm
clip 5, dropout 0.2. ``--cifar`` and ``--demo`` are presets for small data. Runs under ``torchrun`` (DDP, optional
SyncBatchNorm), with bf16 autocast and channels_last on GPUs.

Files in ``--save``: ``checkpoint.pt`` (last state, for resuming and evaluation), ``best.pt`` (the best evaluated
weights), ``summary.json``, ``log.txt``, ``config.yaml`` and TensorBoard curves in ``tb/``. The batch of every step
and its dropout masks are functions of (seed, step, rank), so a run killed at any point and started again with
the same arguments ends with the weights of an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anglenas.archs import parse_arch
from anglenas.checkpoint import atomic_write_text, check_writable, open_run, run_settings, save_checkpoint
from anglenas.config import RuntimeConfig, SizeConfig, field, override
from anglenas.data import DataConfig, build_data
from anglenas.data.streams import step_seed
from anglenas.errors import UserError
from anglenas.log import RunLogger
from anglenas.nn.compat import load_weights, read_checkpoint
from anglenas.runtime import use_threads
from anglenas.spaces import get_space
from anglenas.train.dist import barrier, init_distributed
from anglenas.train.ema import WeightEma
from anglenas.train.optim import linear_lr, set_lr, sgd
from anglenas.train.stop import CheckpointClock, Stopped, stop_requests
from anglenas.train.supernet import autocast_context, evaluate

CHECKPOINT, BEST, SUMMARY = "checkpoint.pt", "best.pt", "summary.json"
SUMMARY_FORMAT = "anglenas-train-summary"
# fields that may change between a run and its resumption (they do not change the trained weights)
RESUMABLE_CHANGES = {"save", "device", "workers", "decode", "compile", "checkpoint_every", "checkpoint_minutes",
                     "eval_every", "eval_batch_size", "eval_limit", "eval", "eval_resume", "demo", "cifar", "darts",
                     "data_dir", "train_dir", "test_dir"}
# fields that define the network; evaluation of one of our checkpoints takes them from the checkpoint
NETWORK_FIELDS = ("arch", "space", "arch_rank", "width_mult", "input_size", "stem_stride", "dropout", "dataset")


@dataclass
class FinalTrainConfig(DataConfig, SizeConfig, RuntimeConfig):
    """Training from scratch; defaults are the paper's ImageNet recipe."""

    arch: str = field("SPOS_ABS", "architecture: op indices like '2 2 -1 0 ...', a published name "
                                  "(SPOS_ABS, FAIRNAS_ABS, PROXYLESS_ABS) or a search_result.json")
    space: str | None = field(None, "space of the architecture (default: from the architecture)")
    arch_rank: int = field(0, "which architecture of a search_result.json (0 = the best)", low=0)
    init_channels: int | None = field(None, "channels of the first cells of a cell network (darts: 45 for a "
                                            "genotype, the paper's; nb201: 16); sets the width", low=2)
    save: str = override("runs/train")
    total_iters: int = field(300000, "training iterations (the original's schedule; 0: give --epochs)", low=0)
    epochs: float = field(0.0, "schedule length in epochs of the training set; overrides total_iters when > 0",
                          low=0)
    batch_size: int = field(1024, "global batch size (divided over ranks)", low=1)
    lr: float = field(0.5, "initial learning rate, decayed linearly to min_lr at the last iteration", low=0)
    min_lr: float = field(0.0, "final learning rate", low=0)
    momentum: float = field(0.9, "SGD momentum", low=0, high=1)
    nesterov: bool = field(False, "Nesterov momentum")
    weight_decay: float = field(4e-5, "weight decay of conv weights (not BN, not the classifier: see "
                                      "--decay_classifier)", low=0)
    decay_classifier: bool = field(False, "also decay the Linear classifier (the original meant to, but its "
                                          "name filter missed it, so by default it is not decayed)")
    auxiliary_weight: float = field(0.4, "weight of an auxiliary head's loss, for networks that have one (DARTS)",
                                    low=0)
    drop_path: float = field(0.0, "drop-path probability, raised linearly over training, for networks that "
                                  "support it (DARTS cells)", low=0, high=1)
    label_smoothing: float = field(0.1, "label smoothing of the cross-entropy", low=0, high=1)
    grad_clip: float = field(5.0, "clip the global gradient norm (0 disables)", low=0)
    dropout: float | None = field(None, "dropout before the classifier (default: the space's: 0.2, shufflenetv2 0.1)",
                                  low=0, high=1)
    ema_decay: float = field(0.0, "EMA of the weights (0 = off, e.g. 0.9998); when on, evaluation, best.pt and "
                                  "the summary use the EMA weights", low=0, high=1)
    eval_every: int = field(10000, "iterations between evaluations (0: once per epoch); always at the end", low=0)
    eval_batch_size: int = field(200, "evaluation batch size", low=1)
    eval_limit: int | None = field(None, "evaluate on a fixed random subset of this many test images (default: all)",
                                   low=1)
    checkpoint_every: int = field(0, "iterations between writes of checkpoint.pt (0: at every evaluation)", low=0)
    checkpoint_minutes: float = field(10.0, "also write checkpoint.pt this many minutes after the last one (0: off)",
                                      low=0)
    channels_last: bool = field(True, "channels_last memory format")
    sync_bn: bool = field(False, "SyncBatchNorm across ranks (multi-GPU only)")
    compile: bool = field(False, "torch.compile the training network (GPU; the first steps are slower)")
    eval: bool = field(False, "only evaluate --eval_resume on the test set and print top-1 / top-5")
    eval_resume: str = field("", "checkpoint to evaluate: ours (checkpoint.pt, best.pt) or the original's")
    cifar: bool = field(False, "the CIFAR-10 recipe (give --data_dir)")
    darts: bool = field(False, "the DARTS ImageNet recipe of DARTS / PDARTS cells (the ABS paper's C=45 networks)")
    decay_all: bool = field(False, "weight decay on every parameter, BN included (the DARTS ImageNet recipe)")
    lr_schedule: str = field("linear", "linear: to min_lr at the last iteration; linear_tail: DARTS ImageNet's "
                                       "linear decay over all but 5 epochs, then a 5-epoch tail",
                             choices=("linear", "linear_tail"))


DEMO = dict(dataset="embedded", width_mult=0.25, stem_stride=1, batch_size=64, lr=0.1, weight_decay=5e-4,
            epochs=8, total_iters=0, eval_every=155, workers=0, save="runs/train-demo")
"""``--demo``: 8 epochs of a width-0.25 network on the embedded 32x32 CIFAR-10 (2,000 training, 500 test images),
evaluated after 5 epochs and at the end; minutes on 2 CPU cores for every space's networks (docs/benchmarks.md,
"Every demo": a DARTS genotype's 14 cells are the slowest)."""

DARTS_IMAGENET = dict(lr=0.25, batch_size=512, epochs=250, total_iters=0, momentum=0.9, weight_decay=3e-5,
                      decay_all=True, lr_schedule="linear_tail", label_smoothing=0.1, auxiliary_weight=0.4,
                      dropout=0.0, grad_clip=5.0, eval_every=0)
"""``--darts``: the original's ``DARTS/training/train_from_scratch.py``, the ImageNet training of DARTS / PDARTS cells
(14 cells, auxiliary head weighted 0.4)."""

CIFAR = dict(dataset="cifar10", width_mult=1.0, stem_stride=1, batch_size=128, lr=0.1, weight_decay=5e-4,
             epochs=200, total_iters=0, eval_every=0, workers=0, save="runs/train-cifar")
"""``--cifar``: 200 epochs on CIFAR-10 at batch 128, lr 0.1 linear to 0, weight decay 5e-4, stem stride 1."""


FinalTrainConfig.presets = {"cifar": CIFAR, "darts": DARTS_IMAGENET, "demo": DEMO}
"""Preset flags in the order they apply: ``--demo`` last, so that with ``--darts`` it still takes minutes."""


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module, x: torch.Tensor,
               y: torch.Tensor, params: list[torch.Tensor], grad_clip: float, amp: bool, aux_weight: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step (autocast when ``amp``, gradient-norm clip); returns (loss, correct) on the device.
    A network that returns ``(logits, aux_logits)`` in training adds ``aux_weight`` times the auxiliary loss."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast_context(x.device, amp):
        out = model(x)
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = criterion(logits, y)
        if aux is not None:
            loss = loss + aux_weight * criterion(aux, y)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return loss.detach(), (logits.argmax(1) == y).sum()


def _paper_units(flops: int, params: int) -> tuple[float, float]:
    return round(flops / 1e6, 2), round(params / 1e6, 3)


class FinalTrainer:
    """Trains (``run``) or evaluates (``evaluate_checkpoint``) the network of ``cfg.arch``."""

    def __init__(self, cfg: FinalTrainConfig) -> None:
        trained = None
        if cfg.eval:
            cfg, trained = self._config_for_eval(cfg)
        self.cfg = cfg
        self.space_name, self.arch = trained or parse_arch(cfg.arch, cfg.space, cfg.arch_rank)
        if not cfg.eval:
            check_writable(cfg.save, "run folder", "--save")
        self.env, self.device = init_distributed(cfg.device)
        self.threads = use_threads(cfg.threads)
        self.save = Path(cfg.save)
        self.logger = RunLogger(None, self.env.is_main)  # the console; run() adds the run folder's log
        self.data = build_data(cfg, self.device, held_out=False, train=not cfg.eval)
        paper = get_space(self.space_name)
        width = paper.width_for_channels(self.arch, cfg.init_channels) if cfg.init_channels else cfg.width_mult
        self.space = dataclasses.replace(cfg, width_mult=width).sized(paper, self.data)
        self.amp = cfg.amp and self.device.type == "cuda"
        self.memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
        torch.manual_seed(cfg.seed)
        if cfg.dropout is None:  # the space's default, recorded as a number (the settings a resume compares)
            self.cfg = cfg = dataclasses.replace(cfg, dropout=self.space.default_dropout)
        self.model = self.space.network(self.arch, cfg.dropout).to(self.device, memory_format=self.memory_format)

    # -- set-up -------------------------------------------------------------------------------------------------
    @staticmethod
    def _config_for_eval(cfg: FinalTrainConfig) -> tuple[FinalTrainConfig, tuple[str, Any] | None]:
        """Our checkpoints record the network and dataset they were trained with: the settings with those, and the
        (space, architecture) trained (None for an original checkpoint, whose network the flags give)."""
        if not cfg.eval_resume:
            raise UserError("--eval needs --eval-resume PATH (a checkpoint.pt / best.pt, or an original checkpoint)")
        ckpt = read_checkpoint(cfg.eval_resume)
        saved = ckpt.get("config") if isinstance(ckpt, dict) else None
        if not isinstance(saved, dict) or "arch" not in saved:
            return cfg, None  # an original checkpoint: the network comes from the flags
        trained = parse_arch(saved["arch"], saved.get("space"), saved.get("arch_rank", 0))
        default_arch = next(f.default for f in dataclasses.fields(cfg) if f.name == "arch")
        if cfg.arch != default_arch:
            given = parse_arch(cfg.arch, cfg.space, cfg.arch_rank)
            if given != trained:
                raise UserError(f"--arch {cfg.arch!r} is not the architecture {cfg.eval_resume} was trained with "
                                f"({get_space(trained[0]).format_arch(trained[1])}, {trained[0]} space); leave "
                                f"--arch out to evaluate it")
        return dataclasses.replace(cfg, **{k: saved[k] for k in NETWORK_FIELDS if k in saved}), trained

    def _describe(self) -> dict[str, float]:
        """Log the architecture with its FLOPs and params, at this size and at the paper's (the space's cost of
        the architecture, cross-checked against counting the network built here); return them."""
        counted = self.space.counted_flops(self.arch)
        real_params = sum(p.numel() for name, p in self.model.named_parameters()  # an auxiliary head is not counted
                          if not name.startswith("auxiliary"))
        flops, params = self.space.arch_cost(self.arch)
        if (counted, real_params) != (flops, params):
            self.logger.info(f"warning: the space's FLOPs / params {flops} / {params} disagree with the network's "
                             f"{counted} / {real_params}")
        ref_flops, ref_params = _paper_units(*get_space(self.space_name).arch_cost(self.arch))
        flops_m, params_m = _paper_units(flops, params)
        self.logger.info(f"architecture ({self.space_name} space): {self.space.format_arch(self.arch)}")
        self.logger.info(f"network: {flops_m}M FLOPs, {params_m}M params at {self.space.input_size}px, width "
                         f"{self.space.width_mult}, {self.space.num_classes} classes (paper size: {ref_flops}M "
                         f"FLOPs, {ref_params}M params); counted by running the network")
        return {"flops_m": flops_m, "params_m": params_m, "reference_flops_m": ref_flops,
                "reference_params_m": ref_params}

    def _evaluate(self, model: nn.Module) -> dict[str, float]:
        model.eval()
        batches = self.data.val_batches(self.cfg.eval_batch_size, self.cfg.channels_last, self.cfg.eval_limit)
        return evaluate(model, batches, self.device, self.amp)

    # -- eval mode ----------------------------------------------------------------------------------------------
    def evaluate_checkpoint(self) -> dict[str, float]:
        """Load ``cfg.eval_resume`` (ours or the original's) and evaluate it on the test set."""
        path = self.cfg.eval_resume
        self.logger.info(f"evaluating on {self.device}, {self.threads} CPU thread(s)")
        self.logger.info(load_weights(self.model, path, self.device))
        self._describe()
        result = self._evaluate(self.model)
        self.logger.info(f"{path}: top-1 {result['top1']:.2f}%, top-5 {result['top5']:.2f}%, "
                         f"loss {result['loss']:.4f} on {result['n']} test images")
        return result

    # -- training -----------------------------------------------------------------------------------------------
    def _setup_training(self) -> None:
        cfg, env = self.cfg, self.env
        self.stream = self.data.train_stream(cfg.batch_size, cfg.seed, env.rank, env.world, cfg.channels_last)
        spe = self.stream.steps_per_epoch
        self.total = round(cfg.epochs * spe) if cfg.epochs > 0 else cfg.total_iters
        if self.total <= 0:
            raise UserError("the schedule is empty: give --total_iters > 0 or --epochs > 0")
        self.eval_every = cfg.eval_every or spe
        self.checkpoint_every = cfg.checkpoint_every or self.eval_every
        if cfg.decay_all:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                             weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
        else:
            self.optimizer = sgd(self.model, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.nesterov,
                                 decay_linear=cfg.decay_classifier)
        self.ema = WeightEma(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.train_model: nn.Module = self.model
        if env.enabled:
            if cfg.sync_bn and self.device.type == "cuda":
                self.train_model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.train_model = nn.parallel.DistributedDataParallel(
                self.train_model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.params = list(self.model.parameters())
        self.step, self.best, self.history, self.last_eval_step = 0, {"top1": -1.0, "step": 0}, [], -1

    def _semantic_config(self) -> dict:
        return run_settings(self.cfg, RESUMABLE_CHANGES)

    def _resume(self) -> None:
        path = self.save / CHECKPOINT
        ckpt = open_run(path, self.cfg, RESUMABLE_CHANGES, self.env.is_main, self.device)
        if ckpt is None:
            return
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.step, self.best, self.history = ckpt["step"], ckpt["best"], ckpt["history"]
        self.last_eval_step = self.history[-1]["step"] if self.history else -1
        self.logger.info(f"resumed from {path} at iteration {self.step}/{self.total}")

    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _checkpoint(self) -> None:
        if self.env.is_main:
            save_checkpoint({"config": self._semantic_config(), "step": self.step, "model": self.model.state_dict(),
                             "optimizer": self.optimizer.state_dict(),
                             "ema": self.ema.state_dict() if self.ema is not None else None,
                             "best": self.best, "history": self.history}, self.save / CHECKPOINT)
        barrier(self.env)

    def _evaluate_and_record(self) -> dict:
        """Evaluate on rank 0, log, keep ``best.pt``; returns the record (empty on other ranks)."""
        record: dict = {}
        self.last_eval_step = self.step  # on every rank: all of them must take the same barriers
        if self.env.is_main:
            result = self._evaluate(self._eval_model())
            record = {"step": self.step, "epoch": round(self.step / self.stream.steps_per_epoch, 2),
                      **{k: round(v, 4) for k, v in result.items() if k != "n"}, "n": result["n"]}
            self.history.append(record)
            for tag in ("top1", "top5", "loss"):
                self.logger.scalar(f"val/{tag}", result[tag], self.step)
            if result["top1"] > self.best["top1"]:
                self.best = {"top1": result["top1"], "top5": result["top5"], "step": self.step}
                save_checkpoint({"config": self._semantic_config(), "step": self.step,
                                 "model": self._eval_model().state_dict(), "top1": result["top1"],
                                 "top5": result["top5"]}, self.save / BEST)
            self.logger.info(f"eval at iteration {self.step}: top-1 {result['top1']:.2f}% top-5 "
                             f"{result['top5']:.2f}% loss {result['loss']:.4f} (best {self.best['top1']:.2f}% "
                             f"at {self.best['step']})")
        barrier(self.env)
        return record

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        set_lr(self.optimizer, self._lr())
        torch.manual_seed(step_seed(cfg.seed, self.step, self.env.rank))  # dropout masks: a function of the step
        if hasattr(self.model, "drop_path_prob"):
            self.model.drop_path_prob = cfg.drop_path * self.step / self.total
        out = train_step(self.train_model, self.optimizer, self.criterion, x, y, self.params, cfg.grad_clip,
                         self.amp, cfg.auxiliary_weight)
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return out

    def _lr(self) -> float:
        """The learning rate of the current iteration."""
        cfg = self.cfg
        if cfg.lr_schedule == "linear":
            return linear_lr(self.step, cfg.lr, self.total, cfg.min_lr)
        spe = self.stream.steps_per_epoch  # DARTS ImageNet, per epoch e of E: a long decay, then a 5-epoch tail
        epochs, epoch = max(round(self.total / spe), 6), self.step // spe
        if epochs - epoch > 5:
            return cfg.lr * (epochs - 5 - epoch) / (epochs - 5)
        return cfg.lr * (epochs - epoch) / ((epochs - 5) * 5)

    def run(self, max_steps: int | None = None) -> dict | None:
        """Train to the end of the schedule (or until iteration ``max_steps``, to simulate an interruption) and
        return the summary (None when stopped early)."""
        self._setup_training()
        self.logger = RunLogger(self.save, self.env.is_main)  # after the inputs are checked: none leaves a folder
        self._resume()
        cfg = self.cfg
        sizes = self._describe()
        self.logger.info(f"training {self.total} iterations ({self.total / self.stream.steps_per_epoch:.1f} "
                         f"epochs of {self.data.num_train} images) at batch {cfg.batch_size} on {self.env.world} "
                         f"x {self.device} ({self.threads} CPU thread(s)), amp {self.amp}, EMA "
                         f"{cfg.ema_decay or 'off'}, evaluation on "
                         f"{min(self.data.num_val, cfg.eval_limit or self.data.num_val)} test images")
        end = self.total if max_steps is None else min(self.total, max_steps)
        progress = self.logger.progress("train", self.total, self.step)
        with stop_requests() as stop:
            self._loop(end, progress, stop)
        if self.step < self.total:
            return None
        if self.last_eval_step != self.step:  # resumed after the end of an interrupted final evaluation
            self._evaluate_and_record()
        return self._write_summary(sizes)

    def _loop(self, end: int, progress, stop) -> None:
        clock = CheckpointClock(self.checkpoint_every, self.cfg.checkpoint_minutes)
        loss_acc = torch.zeros((), device=self.device)
        correct_acc = torch.zeros((), device=self.device)
        seen, t0 = 0, time.perf_counter()
        for x, y in self.stream.batches(self.step, max(end - self.step, 0)):
            loss, correct = self._train_step(x, y)
            loss_acc += loss
            correct_acc += correct
            seen += len(y)
            if self.step % progress.every == 0 or self.step == self.total:  # read device values only here
                lr = self.optimizer.param_groups[0]["lr"]
                n_steps = seen // len(y)
                mean_loss, acc = loss_acc.item() / n_steps, 100.0 * correct_acc.item() / seen
                images_per_s = seen * self.env.world / (time.perf_counter() - t0)
                for tag, value in (("loss", mean_loss), ("top1", acc), ("lr", lr), ("images_per_s", images_per_s)):
                    self.logger.scalar(f"train/{tag}", value, self.step)
                progress.update(self.step - progress.done, loss=mean_loss, top1=acc, lr=lr, img_s=images_per_s)
                loss_acc.zero_(), correct_acc.zero_()
                seen, t0 = 0, time.perf_counter()
            if self.step % self.eval_every == 0 or self.step == self.total:
                self._evaluate_and_record()
            if clock.due(self.step) or self.step == self.total or stop.requested:
                self._checkpoint()
            if stop.requested:
                raise Stopped(f"stopped at iteration {self.step}/{self.total}; {self.save / CHECKPOINT} holds that "
                              f"iteration: run the same command again to resume")

    def _write_summary(self, sizes: dict[str, float]) -> dict | None:
        if not self.env.is_main:
            return None
        last = self.history[-1]
        summary = {"format": SUMMARY_FORMAT, "version": 1, "space": self.space_name, "arch": self.arch,
                   "arch_str": self.space.format_arch(self.arch), "num_classes": self.space.num_classes,
                   "dataset": self.cfg.dataset, "input_size": self.space.input_size,
                   "width_mult": self.space.width_mult, **sizes,
                   "top1": last["top1"], "top5": last["top5"], "eval_images": last["n"],
                   "checkpoint": CHECKPOINT, "best_top1": round(self.best["top1"], 4),
                   "best_top5": round(self.best.get("top5", 0.0), 4), "best_step": self.best["step"],
                   "best_checkpoint": BEST, "iterations": self.total, "batch_size": self.cfg.batch_size,
                   "ema": self.ema is not None, "history": self.history}
        atomic_write_text(self.save / SUMMARY, json.dumps(summary, indent=1) + "\n")
        self.logger.info(f"final top-1 {last['top1']:.2f}%, top-5 {last['top5']:.2f}% ({CHECKPOINT}); best top-1 "
                         f"{self.best['top1']:.2f}% at iteration {self.best['step']} ({BEST}); "
                         f"summary {self.save / SUMMARY}")
        self.logger.close()
        return summary
