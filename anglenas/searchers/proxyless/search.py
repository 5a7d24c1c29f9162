"""ProxylessNAS on any space with a relaxed supernet (the original's ``ProxylessNAS/searching``; home: the shrunk gpu
space), registered as ``proxylessnas``.

Schedule (the original's defaults): ``warmup_epochs`` of weight training on paths drawn from the initial
(near-uniform) architecture distribution, cosine LR from 0.05; then ``n_epochs`` of joint search, cosine LR from
``init_lr``, with one architecture step (Adam on ``alpha``, a search-val batch, plain CE combined with the
hardware term; :mod:`anglenas.searchers.proxyless.gates`) after every ``grad_update_arch_param_every``-th weight
step, none in the first search epoch. Weights: SGD Nesterov, weight decay on every weight, label smoothing; a
weight step trains one path drawn from ``softmax(alpha)``. A space restricted to one op per site has no
architecture weights: its weights train and its only architecture is the result.

Output (the search stage writes ``SAVE/search_result.json``): the supernet's derived architecture (the most
probable op of every site; a DARTS genotype in the DARTS space) with its log-probability, per-epoch history;
``SAVE/arch_probabilities.png`` and TensorBoard scalars of every probability. A checkpoint is written atomically
after every epoch, every ``checkpoint_minutes`` and on Ctrl-C; running the same command again resumes at the step
where it stopped.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

from anglenas.checkpoint import open_run, run_settings, save_checkpoint
from anglenas.data import BatchStream, Data, build_data
from anglenas.data.streams import step_seed
from anglenas.errors import UserError
from anglenas.log import RunLogger
from anglenas.nn.init import init_weights
from anglenas.operations import Operations
from anglenas.runtime import use_threads
from anglenas.search_result import SearchResult
from anglenas.searchers.proxyless.config import DEMO, ProxylessConfig
from anglenas.searchers.proxyless.gates import BinaryGates, sample_path
from anglenas.searchers.proxyless.latency import CostTable, flops_costs, hardware_loss, load_latency_table
from anglenas.searchers.proxyless.report import epoch_record, search_result
from anglenas.searchers.registry import register_searcher
from anglenas.spaces.base import SearchSpace
from anglenas.spaces.relaxed import PathMixing
from anglenas.train.dist import init_distributed
from anglenas.train.stop import Stopped, stop_requests
from anglenas.train.supernet import autocast_context, evaluate

CHECKPOINT, FIGURE = "checkpoint.pt", "arch_probabilities.png"
RESUMABLE_CHANGES = {"save", "demo", "device", "workers", "decode", "train_dir", "test_dir", "data_dir",
                     "checkpoint_minutes", "threads"}


def cosine_lr(peak: float, step: int, total: int) -> float:
    """The original's cosine schedule: ``0.5 * peak * (1 + cos(pi * step / total))``."""
    return 0.5 * peak * (1 + math.cos(math.pi * step / total))


def search_val_stream(data: Data, batch: int, seed: int, channels_last: bool) -> BatchStream:
    """Shuffled, un-augmented batches of search-val addressed by step (the architecture steps' data)."""
    try:
        return data.val_stream(batch, seed, channels_last)
    except ValueError as exc:
        raise UserError(f"search-val: {exc}; lower --grad_data_batch or raise --search_val_size") from None


class ProxylessSearch:
    """One ProxylessNAS run over ``operations``; :meth:`run` trains (resuming if a checkpoint exists) and returns the
    result."""

    def __init__(self, cfg: ProxylessConfig, operations: Operations) -> None:
        self.cfg, self.operations, self.ops = cfg, operations, operations.ops
        if cfg.n_epochs + cfg.warmup_epochs < 1:
            raise UserError("give at least one epoch (--warmup_epochs + --n_epochs >= 1)")
        self.latency = self._latency_table()
        self.env, self.device = init_distributed(cfg.device)
        if self.env.enabled:
            raise UserError("the ProxylessNAS search runs in one process; start it without torchrun")
        self.amp = cfg.amp and self.device.type == "cuda"
        self.threads = use_threads(cfg.threads)
        self.save = Path(cfg.save)

    def _latency_table(self) -> CostTable | None:
        """A user latency table, read (and checked) before anything else; None for ``flops`` and ``none``."""
        hw = self.cfg.target_hardware
        if hw in ("flops", "none", ""):
            return None
        space = self.operations.space  # identity (-1) and none may be left out of the table
        free = [op for site in self.ops for op in site if op < 0 or op in space.path_breakers]
        table = load_latency_table(hw, space.name, self.ops, free)
        if self.cfg.grad_reg_loss_type != "none" and self.cfg.ref_value is None and table.reference is None:
            raise UserError(f"the latency table {hw} has no \"reference\"; pass --ref_value (the target latency, in "
                            f"the table's unit)")
        return table

    # -- setup ------------------------------------------------------------------------------------------------------
    def build(self, space: SearchSpace, stream: BatchStream, arch_stream: BatchStream) -> None:
        """Relaxed supernet of ``space`` (the searched size), optimisers, cost term and batch streams."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        model = space.relaxed_supernet(self.ops)
        init_weights(model, "he_fanout")
        generator = torch.Generator().manual_seed(cfg.seed)
        with torch.no_grad():  # the original's arch_init_type=normal
            for alpha in model.arch_parameters():
                alpha.copy_(torch.randn(alpha.shape, generator=generator) * cfg.arch_init_ratio)
        fmt = torch.channels_last if cfg.channels_last else torch.preserve_format
        self.space, self.model = space, model.to(self.device, memory_format=fmt)
        self.gates = BinaryGates(model, cfg.grad_binary_mode)
        if cfg.target_hardware == "flops":
            self.cost: CostTable | None = flops_costs(space, self.ops, cfg.ref_value)
            self.reference = self.cost.reference
        else:
            self.cost = self.latency
            self.reference = cfg.ref_value or (self.cost.reference if self.cost is not None else None)
        self.weight_opt = torch.optim.SGD(model.weights(), lr=cfg.init_lr, momentum=cfg.momentum,
                                          nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
        arch = model.arch_parameters()
        self.arch_opt = torch.optim.Adam(arch, lr=cfg.arch_lr, betas=(cfg.arch_adam_beta1, cfg.arch_adam_beta2),
                                         eps=cfg.arch_adam_eps, weight_decay=cfg.arch_weight_decay) if arch else None
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.stream, self.arch_stream = stream, arch_stream
        self.steps_per_epoch = stream.steps_per_epoch

    def _build(self, data: Data) -> None:
        cfg = self.cfg
        space = cfg.sized(self.operations.space, data)
        self.data = data
        self.build(space, data.train_stream(cfg.train_batch_size, cfg.seed, channels_last=cfg.channels_last),
                   search_val_stream(data, cfg.grad_data_batch or cfg.train_batch_size, cfg.seed + 1,
                                     cfg.channels_last))

    # -- steps ------------------------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        cfg, n = self.cfg, self.steps_per_epoch
        if step < cfg.warmup_epochs * n:
            return cosine_lr(cfg.warmup_lr, step, cfg.warmup_epochs * n)
        return cosine_lr(cfg.init_lr, step - cfg.warmup_epochs * n, cfg.n_epochs * n)

    def weight_step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step on one path drawn from softmax(alpha); returns (loss, correct predictions)."""
        for group in self.weight_opt.param_groups:
            group["lr"] = self.lr_at(step)
        self.model.train()
        self.model.set_mixing(sample_path(self.model, torch.Generator().manual_seed(step_seed(self.cfg.seed, step,
                                                                                              0))))
        with autocast_context(self.device, self.amp):
            logits = self.model(x)
            loss = self.criterion(logits.float(), y)
        self.weight_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.weight_opt.step()
        return loss.detach(), (logits.argmax(1) == y).sum()

    def arch_step(self, index: int) -> tuple[float, float | None]:
        """One Adam step on the architecture weights (binary gates, ``grad_binary_mode``) on search-val batch
        ``index``; returns (loss, expected cost)."""
        cfg = self.cfg
        (x, y), = self.arch_stream.batches(index, 1)
        self.model.train()
        self.gates.sample(torch.Generator().manual_seed(step_seed(cfg.seed, index, 1)))
        self.model.set_mixing(self.gates)
        with autocast_context(self.device, self.amp):
            logits = self.model(x)
        ce = nn.functional.cross_entropy(logits.float(), y)
        expected = self.cost.expected(self.gates.cost_probs()) if self.cost is not None else None
        loss = hardware_loss(ce, expected, cfg.grad_reg_loss_type, self.reference, cfg.grad_reg_loss_alpha,
                             cfg.grad_reg_loss_beta, cfg.grad_reg_loss_lambda)
        self.arch_opt.zero_grad(set_to_none=True)
        self.weight_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.gates.set_arch_grads()
        self.arch_opt.step()
        if cfg.grad_binary_mode == "two":
            self.gates.rescale_pairs()
        self.weight_opt.zero_grad(set_to_none=True)
        return float(loss.detach()), None if expected is None else float(expected.detach())

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Search-val accuracy of the derived (argmax) path with batch-statistics BN (as the original, whose
        running statistics mix every path); the BN buffers are restored afterwards."""
        saved = {k: v.clone() for k, v in self.model.named_buffers()}
        self.model.train()
        self.model.set_mixing(PathMixing.argmax(self.model))
        batch = self.cfg.grad_data_batch or self.cfg.train_batch_size
        result = evaluate(self.model, self.data.val_batches(batch, self.cfg.channels_last, self.cfg.val_images),
                          self.device, self.amp)
        for k, v in self.model.named_buffers():
            v.copy_(saved[k])
        return result

    # -- the run ----------------------------------------------------------------------------------------------------
    def run(self, until_step: int | None = None) -> SearchResult | None:
        """Train (resuming from the checkpoint if any) up to ``until_step`` (default: the end); returns the result,
        or None when stopped before the end."""
        cfg = self.cfg
        ckpt = open_run(self.save / CHECKPOINT, cfg, RESUMABLE_CHANGES, True, self.device)
        self.logger = RunLogger(self.save)
        self._build(build_data(cfg, self.device, held_out=True))
        n = self.steps_per_epoch
        total = (cfg.warmup_epochs + cfg.n_epochs) * n
        self.state = {"step": 0, "arch_steps": 0, "history": [], "epoch_acc": _new_acc()}
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.weight_opt.load_state_dict(ckpt["weight_opt"])
            if self.arch_opt is not None:
                self.arch_opt.load_state_dict(ckpt["arch_opt"])
            self.state = {k: ckpt[k] for k in self.state}
            self.logger.info(f"resumed at step {self.state['step']}/{total} (epoch {self.state['step'] // n + 1})")
        else:
            self.logger.info(f"ProxylessNAS ({cfg.grad_binary_mode}) in the {self.space.name} space, "
                             f"{self.operations.size:.3g} architectures, {self.space.input_size}px width "
                             f"{cfg.width_mult}: {cfg.warmup_epochs} warm-up + {cfg.n_epochs} search epochs of {n} "
                             f"steps, hardware {cfg.target_hardware} (reference {self.reference or 0:.4g}), "
                             f"{self.device}, {self.threads} CPU threads")
        if self.arch_opt is None:
            self.logger.info("every site has one op: no architecture weights; the weights train and the space's "
                             "only architecture is the result")
        end = total if until_step is None else min(total, until_step)
        with stop_requests() as stop:
            self._train(end, total, stop)
        if self.state["step"] < total:
            self.logger.close()
            return None
        result = self._result()
        self.logger.close()
        return result

    def _train(self, end: int, total: int, stop) -> None:
        cfg, state, n = self.cfg, self.state, self.steps_per_epoch
        progress = self.logger.progress("proxyless", total, state["step"], every=max(1, n // 4))
        last_save = time.monotonic()
        acc = state["epoch_acc"]
        for step, (x, y) in zip(range(state["step"], end), self.stream.batches(state["step"], end - state["step"])):
            epoch, i = divmod(step, n)
            loss, correct = self.weight_step(step, x, y)
            acc["loss"] += float(loss) * len(y)
            acc["correct"] += int(correct)
            acc["images"] += len(y)
            search_epoch = epoch - cfg.warmup_epochs
            if self.arch_opt is not None and search_epoch > 0 and (i + 1) % cfg.grad_update_arch_param_every == 0:
                for _ in range(cfg.grad_update_steps):
                    arch_loss, expected = self.arch_step(state["arch_steps"])
                    state["arch_steps"] += 1
                    acc["arch_loss"] += arch_loss
                    acc["arch_n"] += 1
                    acc["expected"] = expected
            state["step"] = step + 1
            progress.update(1, loss=acc["loss"] / acc["images"], lr=self.lr_at(step))
            if i == n - 1:
                self._end_epoch(epoch)
                acc = state["epoch_acc"] = _new_acc()
                self._checkpoint()
                last_save = time.monotonic()
            elif stop.requested or time.monotonic() - last_save > 60 * cfg.checkpoint_minutes:
                self._checkpoint()
                last_save = time.monotonic()
            if stop.requested:
                raise Stopped(f"stopped after step {state['step']}; a checkpoint of that step was written in "
                              f"{self.save}: run the same command again to resume")
        if state["step"] < total and state["step"] % n:
            self._checkpoint()

    def _checkpoint(self) -> None:
        save_checkpoint({"config": run_settings(self.cfg, RESUMABLE_CHANGES), **self.state,
                         "model": self.model.state_dict(), "weight_opt": self.weight_opt.state_dict(),
                         "arch_opt": None if self.arch_opt is None else self.arch_opt.state_dict()},
                        self.save / CHECKPOINT)

    def _end_epoch(self, epoch: int) -> None:
        self.state["history"].append(epoch_record(self, epoch))

    def _result(self) -> SearchResult:
        return search_result(self)


def _new_acc() -> dict:
    return {"loss": 0.0, "correct": 0, "images": 0, "arch_loss": 0.0, "arch_n": 0, "expected": None}


@register_searcher("proxylessnas", ProxylessConfig, "relaxed", "gpu", presets={"demo": DEMO},
                   description="ProxylessNAS: binary gates and an expected-FLOPs or latency term")
def run_proxyless(cfg: ProxylessConfig, operations: Operations) -> SearchResult | None:
    """ProxylessNAS over ``operations`` (any space with a relaxed supernet)."""
    return ProxylessSearch(cfg, operations).run()


__all__ = ["ProxylessSearch", "cosine_lr", "run_proxyless"]
