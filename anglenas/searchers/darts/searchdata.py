"""Settings, data and loops shared by the DARTS and PDARTS searches: the CIFAR training set split into a weight half
and an architecture half (``train_portion``), upstream's per-epoch cosine schedule, one epoch of alternating
updates, and evaluation on the architecture half."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Iterator

import torch
from torch import nn

from anglenas.config import RuntimeConfig, SizeConfig, field, override
from anglenas.data import DataConfig, build_data, eval_subset
from anglenas.data.sources import split_indices, to_tensor_nchw
from anglenas.data.streams import Batch, TensorStream, tensor_eval_batches
from anglenas.errors import UserError
from anglenas.log import Progress
from anglenas.searchers.darts.architect import LOW_PRECISION, Architect
from anglenas.searchers.registry import SearchInputConfig
from anglenas.spaces.relaxed import RelaxedSupernet
from anglenas.train.supernet import autocast_context


@dataclass
class CellSearchConfig(RuntimeConfig, SizeConfig, DataConfig, SearchInputConfig):
    """Settings the DARTS and PDARTS searches share (defaults: upstream DARTS' CIFAR-10 settings)."""

    dataset: str = override("auto")
    batch_size: int = field(64, "batch size (of each half)", low=1)
    learning_rate: float = field(0.025, "initial weight learning rate (cosine schedule)", low=0)
    learning_rate_min: float = field(0.001, "final weight learning rate", low=0)
    momentum: float = field(0.9, "SGD momentum", low=0, high=1)
    weight_decay: float = field(3e-4, "weight decay of the network weights", low=0)
    epochs: int = field(50, "search epochs", low=1)
    init_channels: int | None = field(None, "channels of the search network (default: the space's search size; "
                                            "darts: 16)", low=1)
    grad_clip: float = field(5.0, "gradient-norm clip of the weights (0: off)", low=0)
    train_portion: float = field(0.5, "share of the training set for the weights (the rest trains the "
                                      "architecture), strictly between 0 and 1", low=0, high=1)
    arch_learning_rate: float = field(3e-4, "Adam learning rate of the architecture weights", low=0)
    arch_weight_decay: float = field(1e-3, "Adam weight decay of the architecture weights", low=0)
    steps_per_epoch: int = field(0, "cap on steps per epoch (0: a full pass over the weight half)", low=0)
    eval_limit: int | None = field(None, "evaluate each epoch on this many held-out images (default: all)", low=1)
    seed: int = override(2)
    stem_stride: int = override(1)
    workers: int = override(0)
    flag_aliases: ClassVar[dict[str, str]] = {"layers": "depth", "data": "data_dir"}
    """Upstream's --layers is the cells of the search network (--depth)."""


RESUMABLE = {"save", "device", "threads", "demo", "data_dir", "eval_limit", "workers", "decode", "train_dir",
             "test_dir"}
"""Settings a resumed search may change (they do not change its result)."""


class SearchData:
    """Weight batches from a ``train_portion`` share of the (shuffled) training set, architecture batches and
    held-out evaluation from the rest; both training streams are augmented (crop + flip) as upstream."""

    def __init__(self, cfg: DataConfig, train_portion: float, batch_size: int, seed: int, device: torch.device):
        if not 0.0 < train_portion < 1.0:
            raise UserError(f"--train_portion must lie strictly between 0 and 1, got {train_portion}")
        data = build_data(cfg, "cpu", held_out=False)
        train = data.train_arrays  # the whole training set
        self.num_classes, self.input_size, self.normalize = data.num_classes, data.input_size, data.normalize
        held = len(train) - int(math.floor(train_portion * len(train)))
        weight_idx, arch_idx = split_indices(len(train), held, seed)
        weight_x, arch_x = (to_tensor_nchw(train.images[i], device) for i in (weight_idx, arch_idx))
        weight_y, arch_y = (torch.from_numpy(train.labels[i]) for i in (weight_idx, arch_idx))
        try:
            self.weight_stream = TensorStream(weight_x, weight_y, batch_size, seed, self.normalize)
            self.arch_stream = TensorStream(arch_x, arch_y, batch_size, seed + 1, self.normalize)
        except ValueError as exc:
            raise UserError(f"{exc}; lower --batch_size") from None
        self._arch_x, self._arch_y = arch_x, arch_y
        self.steps_per_epoch = min(self.weight_stream.steps_per_epoch, self.arch_stream.steps_per_epoch)

    def val_batches(self, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        """Un-augmented batches of the architecture half (``limit``: a fixed random subset)."""
        sub = torch.from_numpy(eval_subset(len(self._arch_y), limit)).to(self._arch_x.device)
        return tensor_eval_batches(self._arch_x[sub], self._arch_y[sub.cpu()], batch_size, self.normalize)


def cosine_lr(t: int, epochs: int, lr: float, lr_min: float) -> float:
    """``CosineAnnealingLR(T_max=epochs, eta_min=lr_min)`` after ``t`` scheduler steps."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * t / epochs)) / 2


def epoch_lr(epoch: int, epochs: int, lr: float, lr_min: float) -> float:
    """The rate upstream DARTS and PDARTS train epoch ``epoch`` (from 0) at: they step the scheduler at the top of
    the epoch loop (PyTorch 0.3 / 0.4 order), so epoch e runs at the cosine's value after e + 1 steps, and the last
    epoch at ``lr_min``."""
    return cosine_lr(epoch + 1, epochs, lr, lr_min)


def train_epoch(model: RelaxedSupernet, architect: Architect | None, optimizer: torch.optim.Optimizer,
                data: SearchData, start_step: int, num_steps: int, lr: float, grad_clip: float, amp: bool,
                progress: Progress | None = None) -> dict[str, float]:
    """One epoch: per step an architecture update on the architecture half (skipped when ``architect`` is None)
    then an SGD step of the weights (gradient-norm clip). Batches are those of global steps start..start+n-1."""
    model.train()
    criterion = nn.CrossEntropyLoss()
    weights = model.weights()
    loss_sum = torch.zeros((), device=next(model.parameters()).device)
    correct, seen = torch.zeros_like(loss_sum), 0
    arch_batches = data.arch_stream.batches(start_step, num_steps)
    for x, y in data.weight_stream.batches(start_step, num_steps):
        xv, yv = next(arch_batches)
        if architect is not None:
            architect.step((x, y), (xv, yv), lr, optimizer)
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(x.device, amp):
            logits = model(x)
        loss = criterion(logits.float() if logits.dtype in LOW_PRECISION else logits, y)
        loss.backward(inputs=weights)
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(weights, grad_clip)
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if progress is not None:
            progress.update(1)
    return {"train_loss": loss_sum.item() / max(seen, 1), "train_top1": 100.0 * correct.item() / max(seen, 1)}
