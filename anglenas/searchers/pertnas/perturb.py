"""Training phases and perturb-val: score an op by the validation accuracy after removing it.

``perturb_val`` masks one candidate at a time, fine-tunes the network for a few steps, measures validation
accuracy and scores ``acc_after - acc_before`` (percentage points; lower = the removal hurts more = the op matters
more). Fixed here (the original's ``perturb_val`` in ``search_evolutionary.py``):

- every candidate starts from the same weights and optimizer state: both are deep-copied before the first
  candidate and loaded again before each one and at the end (the original's ``state_dict()`` backup aliased the
  live tensors, so fine-tuning accumulated over candidates; ``restore_model=False`` reproduces that);
- each candidate's fine-tuning data is keyed by the candidate (site, op), not by its position in the loop, so the
  scores do not depend on the order candidates are visited in.
"""
from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from anglenas.data.streams import Batch
from anglenas.spaces.relaxed import RelaxedSupernet

BatchSource = Callable[[Sequence[int], int], Iterator[Batch]]
"""``source(key, num_steps)``: that many training batches, a pure function of ``key``."""


@dataclass(frozen=True)
class StepSettings:
    """SGD and precision settings shared by every training and fine-tuning phase."""

    momentum: float = 0.9
    weight_decay: float = 3e-4
    lr_min: float = 0.001
    amp: bool = False  # fp16 autocast + GradScaler (CUDA only)


def autocast(device: torch.device, amp: bool):
    return torch.autocast("cuda", dtype=torch.float16) if amp and device.type == "cuda" else nullcontext()


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Batch],
                settings: StepSettings, on_step: Callable[[torch.Tensor], None] | None = None,
                scaler: torch.amp.GradScaler | None = None) -> None:
    """SGD steps in train mode (no gradient clipping, as the original); ``on_step`` gets each (detached) loss.
    Without ``scaler`` a fresh one is made (AMP on CUDA)."""
    device = next(model.parameters()).device
    scaler = scaler or new_scaler(device, settings)
    model.train()
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, settings.amp):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if on_step is not None:
            on_step(loss.detach())


def new_sgd(model: RelaxedSupernet, lr: float, settings: StepSettings) -> torch.optim.SGD:
    """SGD over the network weights (the architecture weights stay out: PertNAS' op weights are fixed)."""
    return torch.optim.SGD(model.weights(), lr=lr, momentum=settings.momentum, weight_decay=settings.weight_decay)


def new_scaler(device: torch.device, settings: StepSettings) -> torch.amp.GradScaler:
    return torch.amp.GradScaler("cuda", enabled=settings.amp and device.type == "cuda")


def train_phase(model: RelaxedSupernet, source: BatchSource, key: Sequence[int], lr: float, epochs: int,
                steps_per_epoch: int, settings: StepSettings,
                evaluate: Callable[[nn.Module], float] | None = None,
                on_epoch: Callable[[int, float], None] | None = None,
                on_step: Callable[[torch.Tensor], None] | None = None) -> torch.optim.Optimizer:
    """A fresh SGD optimizer over the network weights with a per-epoch cosine schedule from ``lr`` to ``lr_min`` over
    ``epochs``; returns it after training (its LR is then ``lr_min``, its momentum that of the last step)."""
    optimizer = new_sgd(model, lr, settings)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=settings.lr_min)
    scaler = new_scaler(next(model.parameters()).device, settings)  # one per phase, as the original
    for epoch in range(epochs):
        train_steps(model, optimizer, source((*key, epoch), steps_per_epoch), settings, on_step, scaler)
        schedule.step()
        if evaluate is not None and on_epoch is not None:
            on_epoch(epoch, evaluate(model))
    return optimizer


@torch.no_grad()
def accuracy(model: nn.Module, batches: Iterable[Batch], amp: bool = False) -> float:
    """Top-1 accuracy (%) in eval mode."""
    device = next(model.parameters()).device
    model.eval()
    correct = total = 0
    for x, y in batches:
        with autocast(device, amp):
            correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return 100.0 * correct / max(total, 1)


@dataclass(frozen=True)
class Candidate:
    """Mask position ``position`` of site ``site`` (whose op id is ``op``); position None masks nothing (the
    original's topology phase "perturbs" removed edges too: a fine-tune with every op in place)."""

    site: int
    position: int | None
    op: int


def perturb_val(model: nn.Module, masks: list[list[float]], optimizer: torch.optim.Optimizer,
                candidates: Sequence[Candidate], source: BatchSource, key: Sequence[int], steps: int,
                settings: StepSettings, evaluate: Callable[[nn.Module], float],
                restore_model: bool = True) -> list[float]:
    """The score of each candidate: validation accuracy after masking it and fine-tuning ``steps`` steps (data
    keyed by ``(*key, site, op)``) minus the accuracy before. ``masks[site][position]`` is the mask ``model`` reads.

    The optimizer keeps its LR and momentum; model and optimizer leave exactly as they came. With
    ``restore_model=False`` (the original's aliased backup) each candidate fine-tunes the weights the previous one
    left, and so does the model leave.
    """
    model_backup = copy.deepcopy(model.state_dict())
    optimizer_backup = copy.deepcopy(optimizer.state_dict())
    before = evaluate(model)
    scores = []
    for cand in candidates:
        perturbed = cand.position is not None
        if perturbed:
            masks[cand.site][cand.position] = 0.0
        if restore_model:
            model.load_state_dict(model_backup)
        # load_state_dict keeps same-device tensors by reference: hand it a copy so the backup stays intact
        optimizer.load_state_dict(copy.deepcopy(optimizer_backup))
        try:
            train_steps(model, optimizer, source((*key, cand.site, cand.op), steps), settings)
            score = evaluate(model) - before
        finally:
            if perturbed:
                masks[cand.site][cand.position] = 1.0
        scores.append(score)
    if restore_model:
        model.load_state_dict(model_backup)
    optimizer.load_state_dict(copy.deepcopy(optimizer_backup))
    return scores
