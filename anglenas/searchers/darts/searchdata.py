"""Data and loops shared by the DARTS and PDARTS searches: the CIFAR training set split into a weight half and an
architecture half (``train_portion``), one epoch of alternating updates, and evaluation on the architecture half."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from anglenas.config import field
from anglenas.data import DataConfig, build_data, eval_subset
from anglenas.data.sources import split_indices, to_tensor_nchw
from anglenas.data.streams import Batch, TensorStream, tensor_eval_batches
from anglenas.errors import UserError
from anglenas.log import Progress
from anglenas.operations import load_operations
from anglenas.searchers.darts.architect import LOW_PRECISION, Architect
from anglenas.spaces.darts.model_search import SearchNetwork, check_edge_ops, full_edge_ops
from anglenas.train.supernet import autocast_context

DATASETS = ("auto", "embedded", "cifar10", "cifar10-jpg")


@dataclass
class CellSearchConfig:
    """Settings the DARTS and PDARTS searches share (defaults: upstream DARTS' CIFAR-10 settings, spec §9.1)."""

    dataset: str = field("auto", "image source (auto: from the data path)", choices=DATASETS)
    batch_size: int = field(64, "batch size (of each half)")
    learning_rate: float = field(0.025, "initial weight learning rate (cosine schedule)")
    learning_rate_min: float = field(0.001, "final weight learning rate")
    momentum: float = field(0.9, "SGD momentum")
    weight_decay: float = field(3e-4, "weight decay of the network weights")
    epochs: int = field(50, "search epochs")
    init_channels: int = field(16, "channels of the first cells")
    layers: int = field(8, "number of cells")
    seed: int = field(2, "seed of the weights, alphas, data split and order")
    grad_clip: float = field(5.0, "gradient-norm clip of the weights")
    train_portion: float = field(0.5, "share of the training set for the weights (the rest trains the alphas)")
    arch_learning_rate: float = field(3e-4, "Adam learning rate of the alphas")
    arch_weight_decay: float = field(1e-3, "Adam weight decay of the alphas")
    steps_per_epoch: int = field(0, "cap on steps per epoch (0: a full pass over the weight half)")
    eval_limit: int | None = field(None, "evaluate each epoch on this many held-out images (default: all)")
    device: str = field("auto", "cuda, cpu or auto")
    threads: int = field(0, "CPU intra-op threads (0: PyTorch's default; 1 suits tiny models on a busy CPU)")
    amp: bool = field(False, "bf16 autocast on CUDA (less memory; off reproduces upstream)")
    demo: bool = field(False, "tiny settings on the embedded data: a CPU run of about a minute")


def read_edge_ops(path: str) -> list[list[int]]:
    """The 14 per-edge op lists of a ``darts`` operations file (JSON or the original pickle); all 8 ops without."""
    if not path:
        return full_edge_ops()
    return check_edge_ops(load_operations(path, "darts").ops)


def resolve_dataset(dataset: str, data: str) -> str:
    """``auto``: the JPEG tarball when ``data`` is a file, the python-pickle CIFAR-10 folder otherwise."""
    if dataset != "auto":
        return dataset
    if not data:
        raise UserError("no data: pass --data DIR (CIFAR-10 python folder, or the cifar10-jpg tarball), or --demo")
    return "cifar10-jpg" if Path(data).is_file() else "cifar10"


class SearchData:
    """Weight batches from a ``train_portion`` share of the (shuffled) training set, architecture batches and
    held-out evaluation from the rest; both training streams are augmented (crop + flip) as upstream."""

    def __init__(self, dataset: str, data_dir: str, train_portion: float, batch_size: int, seed: int,
                 device: torch.device):
        if not 0.0 < train_portion < 1.0:
            raise UserError(f"--train_portion must lie in (0, 1), got {train_portion}")
        cfg = DataConfig(dataset=resolve_dataset(dataset, data_dir), data_dir=data_dir, workers=0)
        data = build_data(cfg, "cpu", held_out=False)
        train = data.train_arrays  # the whole training set
        self.num_classes, self.normalize = data.num_classes, data.normalize
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


def cosine_lr(epoch: int, epochs: int, lr: float, lr_min: float) -> float:
    """Upstream's per-epoch CosineAnnealingLR (T_max = epochs), read at the start of ``epoch``."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def train_epoch(model: SearchNetwork, architect: Architect | None, optimizer: torch.optim.Optimizer,
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
