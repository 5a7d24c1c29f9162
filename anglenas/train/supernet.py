"""The supernet training loop shared by shrinking (uniform single path) and the searchers.

One step: set the LR of the step, optionally take an architecture step on a validation batch (DARTS' architect,
ProxylessNAS' gate update), draw the step's path(s) (a sampler may read the architecture parameters),
forward/backward each (FairNAS accumulates the gradients of its m paths), average the sampled path's gradients
over ranks, clip by value, SGD. Gradients are reset to ``None`` every step, so unsampled operators receive
neither momentum nor weight decay.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from anglenas.config import RuntimeConfig, field, override
from anglenas.data import BatchStream
from anglenas.log import RunLogger
from anglenas.train.dist import DistEnv, all_reduce_grads
from anglenas.train.optim import linear_lr, set_lr, sgd
from anglenas.train.samplers import PathSampler
from anglenas.train.stop import CheckpointClock, Stopped, stop_requests

ArchStep = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]
"""``arch_step(step, x_train, y_train, x_val, y_val)``: one update of the architecture parameters."""


@dataclass
class SupernetTrainConfig(RuntimeConfig):
    """Supernet optimisation; the batch size is global, divided over the ranks."""

    batch_size: int = field(512, "global batch size (divided over ranks)", low=1)
    lr: float = field(0.25, "initial learning rate", low=0)
    min_lr: float = field(5e-4, "learning-rate floor of the linear schedule", low=0)
    momentum: float = field(0.9, "SGD momentum", low=0, high=1)
    weight_decay: float = field(4e-5, "weight decay of conv weights and the classifier", low=0)
    decay_classifier: bool = field(True, "weight-decay the Linear classifier too (--no-decay_classifier: conv "
                                         "weights only)")
    label_smoothing: float = field(0.1, "label smoothing of the cross-entropy", low=0, high=1)
    grad_clip: float = field(5.0, "clip gradients by value (0 disables)", low=0)
    seed: int = override(5)
    channels_last: bool = field(True, "channels_last memory format (faster for these depthwise nets on GPU and CPU)")
    checkpoint_minutes: float = field(10.0, "also write a checkpoint this many minutes after the last one (0: off)",
                                      low=0)


def autocast_context(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when enabled, otherwise a no-op context."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class SupernetTrainer:
    """Trains ``model(x, path)`` with paths from ``sampler`` on batches from ``stream``.

    ``total_steps`` is the horizon of the linear LR schedule (it may exceed the steps actually run, as in
    shrinking, where the LR then stays at its floor). With ``arch_step`` and ``arch_stream`` (batches addressed by
    step like ``stream``), ``arch_step`` runs before every weight step on that step's validation batch.
    """

    def __init__(self, model: nn.Module, sampler: PathSampler, stream: BatchStream, cfg: SupernetTrainConfig,
                 total_steps: int, device: torch.device, env: DistEnv = DistEnv(),
                 logger: RunLogger | None = None, arch_step: ArchStep | None = None,
                 arch_stream: BatchStream | None = None) -> None:
        if (arch_step is None) != (arch_stream is None):
            raise ValueError("arch_step and arch_stream go together")
        self.arch_step, self.arch_stream = arch_step, arch_stream
        self.cfg, self.device, self.env = cfg, device, env
        self.amp = cfg.amp and device.type == "cuda"
        self.model = model.to(device, memory_format=torch.channels_last if cfg.channels_last
                              else torch.preserve_format)
        self.sampler, self.stream, self.total_steps = sampler, stream, total_steps
        self.schedule_start = 0  # the LR schedule runs from this step (a warm-up stage restarts it)
        self.optimizer = sgd(self.model, cfg.lr, cfg.momentum, cfg.weight_decay, decay_linear=cfg.decay_classifier)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.params = list(self.model.parameters())
        self.logger = logger or RunLogger(None, enabled=False)

    def step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimisation step; returns (loss summed over the paths, correct predictions, number of paths)."""
        set_lr(self.optimizer, linear_lr(step - self.schedule_start, self.cfg.lr, self.total_steps, self.cfg.min_lr))
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        paths = self.sampler.paths(step)
        for path in paths:
            with autocast_context(self.device, self.amp):
                logits = self.model(x, path)
                loss = self.criterion(logits, y)
            loss.backward()
            loss_sum += loss.detach()
            correct += (logits.argmax(1) == y).sum()
        sampled = [p for p in self.params if p.grad is not None]
        all_reduce_grads(sampled, self.env)
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_value_(sampled, self.cfg.grad_clip)
        self.optimizer.step()
        return loss_sum, correct, len(paths)

    def train(self, start: int, end: int, desc: str = "train",
              checkpoint: Callable[[int], None] | None = None, checkpoint_every: int = 0,
              planned: int | None = None) -> None:
        """Run steps ``start`` .. ``end - 1``; call ``checkpoint(next_step)`` every ``checkpoint_every`` steps and
        every ``checkpoint_minutes``; on Ctrl-C / SIGTERM, checkpoint after the current step and raise
        :class:`~anglenas.train.stop.Stopped`. ``planned``: the last step of the whole stage, so that the progress
        line's ETA covers the stage, not only this call."""
        if end <= start:
            return
        progress = self.logger.progress(desc, max(end, planned or end), start)
        val = self.arch_stream.batches(start, end - start) if self.arch_stream is not None else None
        clock = CheckpointClock(checkpoint_every, self.cfg.checkpoint_minutes)
        with stop_requests() as stop:
            self._train(start, end, progress, val, clock, stop, checkpoint)

    def _train(self, start, end, progress, val, clock, stop, checkpoint) -> None:
        loss_acc = torch.zeros((), device=self.device)
        correct_acc = torch.zeros((), device=self.device)
        forwards = images = 0
        for step, (x, y) in zip(range(start, end), self.stream.batches(start, end - start)):
            if val is not None:
                self.arch_step(step, x, y, *next(val))
            loss, correct, n_paths = self.step(step, x, y)
            loss_acc += loss
            correct_acc += correct
            forwards += n_paths
            images += n_paths * len(y)
            done = step + 1
            if done % progress.every == 0 or done == end:  # read device values only when logging
                lr = self.optimizer.param_groups[0]["lr"]
                mean_loss, acc = loss_acc.item() / forwards, 100.0 * correct_acc.item() / images
                for tag, value in (("loss", mean_loss), ("top1", acc), ("lr", lr)):
                    self.logger.scalar(f"train/{tag}", value, done)
                progress.update(done - progress.done, loss=mean_loss, top1=acc, lr=lr)
                loss_acc.zero_()
                correct_acc.zero_()
                forwards = images = 0
            if checkpoint is not None and (stop.requested or (done < end and clock.due(done))):
                checkpoint(done)
            if stop.requested:
                raise Stopped(f"stopped after step {done}; " + ("a checkpoint of that step was written: run the same "
                                                               "command again to resume" if checkpoint is not None
                                                               else "nothing was saved"))

    def reset_optimizer(self) -> None:
        """A fresh optimiser over the model's current parameters (after the model grew)."""
        self.optimizer = sgd(self.model, self.cfg.lr, self.cfg.momentum, self.cfg.weight_decay,
                             decay_linear=self.cfg.decay_classifier)
        self.params = list(self.model.parameters())

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


@torch.no_grad()
def evaluate(forward: Callable[[torch.Tensor], torch.Tensor], batches, device: torch.device,
             amp: bool = False) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%) and mean cross-entropy of ``forward`` over ``batches``."""
    correct1 = correct5 = 0
    loss_sum, n = 0.0, 0
    for x, y in batches:
        with autocast_context(device, amp):
            logits = forward(x).float()
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top5[:, 0] == y).sum().item()
        correct5 += (top5 == y[:, None]).any(1).sum().item()
        n += len(y)
    if n == 0:
        return {"top1": 0.0, "top5": 0.0, "loss": 0.0, "n": 0}
    return {"top1": 100.0 * correct1 / n, "top5": 100.0 * correct5 / n, "loss": loss_sum / n, "n": n}
