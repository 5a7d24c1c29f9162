"""Data and loops shared by the DARTS and PDARTS searches: the CIFAR training set split into a weight half and an
architecture half (``train_portion``), one epoch of alternating updates, and evaluation on the architecture half."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from anglenas.data import Data, DataConfig, build_data
from anglenas.data.sources import to_tensor_nchw
from anglenas.data.streams import TensorStream
from anglenas.darts.architect import LOW_PRECISION, Architect
from anglenas.errors import UserError
from anglenas.log import Progress
from anglenas.operations import load_operations
from anglenas.darts.model_search import SearchNetwork, check_edge_ops, full_edge_ops
from anglenas.train.supernet import autocast_context

DATASETS = ("auto", "embedded", "cifar10", "cifar10-jpg")


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
    """Weight batches from the first ``train_portion`` of the (shuffled) training set, architecture batches and
    validation from the rest; both training streams are augmented (crop + flip) as upstream."""

    def __init__(self, dataset: str, data_dir: str, train_portion: float, batch_size: int, seed: int,
                 device: torch.device):
        if not 0.0 < train_portion < 1.0:
            raise UserError(f"--train_portion must lie in (0, 1), got {train_portion}")
        cfg = DataConfig(dataset=resolve_dataset(dataset, data_dir), data_dir=data_dir, workers=0)
        probe = build_data(cfg, "cpu", held_out=False)
        held = probe.num_train - int(math.floor(train_portion * probe.num_train))
        cfg.search_val_size, cfg.split_seed = held, seed
        self.data: Data = build_data(cfg, device, held_out=True)
        self.num_classes = self.data.num_classes
        self.weight_stream = self.data.train_stream(batch_size, seed)
        held_out = self.data._val  # the architecture half (Data exposes it only for evaluation)
        try:
            self.arch_stream = TensorStream(to_tensor_nchw(held_out.images, device), torch.from_numpy(held_out.labels),
                                            batch_size, seed + 1, self.data.normalize)
        except ValueError as exc:
            raise UserError(f"{exc}; lower --batch_size") from None
        self.steps_per_epoch = min(self.weight_stream.steps_per_epoch, self.arch_stream.steps_per_epoch)


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
