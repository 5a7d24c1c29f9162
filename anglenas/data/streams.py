"""Deterministic, resumable batch streams.

A training stream is addressed by the global step: the batch of step ``t`` (and its augmentation) is a pure
function of ``(seed, t, rank)``, so a run resumed at step ``t`` sees exactly the batches an uninterrupted run
would. An epoch is a seeded permutation of the training set cut into ``N // global_batch`` global batches; each
rank takes its own contiguous slice of every global batch.
"""
from __future__ import annotations

from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
import torch
from PIL import Image

from anglenas.data.augment import Pipeline, apply_augment, draw_augment
from anglenas.data.normalize import Normalize
from anglenas.data.sources import UNREADABLE, CheckedImageFolder
from anglenas.errors import UserError

Batch = tuple[torch.Tensor, torch.Tensor]


def step_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (seed, step, rank, ...)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


class BatchStream(Protocol):
    """A training stream: ``batches(start, n)`` yields the normalised batches of global steps start..start+n-1."""

    steps_per_epoch: int
    per_rank_batch: int

    def batches(self, start_step: int, num_steps: int) -> Iterator[Batch]: ...


class _EpochIndex:
    """The dataset indices of each rank's share of a global step."""

    def __init__(self, n: int, global_batch: int, seed: int, rank: int, world: int) -> None:
        if global_batch % world:
            raise ValueError(f"global batch {global_batch} is not divisible by the world size {world}")
        if n < global_batch:
            raise ValueError(f"the training set has {n} images, fewer than one global batch of {global_batch}")
        self.n, self.global_batch, self.seed, self.rank = n, global_batch, seed, rank
        self.per_rank = global_batch // world
        self.steps_per_epoch = n // global_batch
        self._perm_epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def __call__(self, step: int) -> np.ndarray:
        epoch, pos = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm, self._perm_epoch = np.random.default_rng([self.seed, epoch]).permutation(self.n), epoch
        start = pos * self.global_batch + self.rank * self.per_rank
        return self._perm[start: start + self.per_rank]


class TensorStream:
    """Training batches from uint8 images held on the device, with CIFAR augmentation done there.

    Augmentation: random crop with ``pad`` zero padding, then a horizontal flip, per image (torchvision's
    ``RandomCrop(padding) + RandomHorizontalFlip``), from a generator seeded by (seed, step, rank).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, global_batch: int, seed: int,
                 normalize: Normalize, rank: int = 0, world: int = 1, pad: int = 4, flip: bool = True,
                 channels_last: bool = False) -> None:
        self.images, self.labels = images, labels.to(images.device)
        self.index = _EpochIndex(len(labels), global_batch, seed, rank, world)
        self.steps_per_epoch, self.per_rank_batch = self.index.steps_per_epoch, self.index.per_rank
        self.seed, self.rank, self.channels_last = seed, rank, channels_last
        self.pipeline = Pipeline(flip=flip, pad=pad, cutout=0, cutout_fill=(0, 0, 0), normalize=normalize,
                                 flip_first=False)
        self.normalize = normalize

    def batch(self, step: int) -> Batch:
        idx = torch.from_numpy(self.index(step)).to(self.images.device)
        x, y = self.images[idx], self.labels[idx]
        gen = torch.Generator(device="cpu").manual_seed(step_seed(self.seed, step, self.rank))
        x = apply_augment(x, draw_augment(len(idx), x.shape[-1], self.pipeline, gen), self.pipeline)
        return self.normalize(x, self.channels_last), y

    def batches(self, start_step: int, num_steps: int) -> Iterator[Batch]:
        for step in range(start_step, start_step + num_steps):
            yield self.batch(step)


def tensor_eval_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, normalize: Normalize,
                        channels_last: bool = False) -> Iterator[Batch]:
    """Un-augmented batches of an in-memory set, in order."""
    labels = labels.to(images.device)
    for start in range(0, len(labels), batch_size):
        yield normalize(images[start: start + batch_size], channels_last), labels[start: start + batch_size]


class SeededTransform(torch.utils.data.Dataset):
    """Applies ``transform(img, rng)`` with a per-sample seed that the sampler sends along with the index.

    An unreadable image is replaced by the next readable one of the subset (see
    :meth:`anglenas.data.sources.CheckedImageFolder.first_readable`), so batches keep their size.
    """

    def __init__(self, base: CheckedImageFolder, indices: Sequence[int], transform: Callable) -> None:
        self.base, self.indices, self.transform = base, np.asarray(indices), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: tuple[int, int]):
        i, seed = item
        img, label = self.base.first_readable(self.indices, i)
        return self.transform(img, np.random.default_rng(seed)), label


class _StepBatches:
    """Infinite batch sampler: the (index, seed) lists of global steps ``start``, ``start + 1``, ..."""

    def __init__(self, index: _EpochIndex, seed: int, rank: int) -> None:
        self.index, self.seed, self.rank, self.start = index, seed, rank, 0

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while True:
            base_seed = step_seed(self.seed, step, self.rank)
            yield [(int(i), base_seed + k) for k, i in enumerate(self.index(step))]
            step += 1


class LoaderStream:
    """Training batches from persistent DataLoader workers over a dataset indexed by ``(index, seed)``.

    Consecutive ``batches`` calls continue one prefetching iterator; a call that starts elsewhere (a resume)
    restarts it at that step. ``finish`` turns a collated batch into (uint8 or float images, labels) on the
    device (default: a plain transfer; :class:`anglenas.data.jpeg.DeviceAugment` decodes JPEGs there).
    """

    def __init__(self, dataset: torch.utils.data.Dataset, global_batch: int, seed: int, normalize: Normalize,
                 device: torch.device, rank: int = 0, world: int = 1, workers: int = 8,
                 channels_last: bool = False, collate_fn: Callable | None = None,
                 finish: Callable | None = None) -> None:
        self.index = _EpochIndex(len(dataset), global_batch, seed, rank, world)
        self.steps_per_epoch, self.per_rank_batch = self.index.steps_per_epoch, self.index.per_rank
        self.device, self.normalize, self.channels_last = device, normalize, channels_last
        self.finish = finish or self._transfer
        self._sampler = _StepBatches(self.index, seed, rank)
        self._loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self._sampler, num_workers=workers, pin_memory=device.type == "cuda",
            persistent_workers=workers > 0, prefetch_factor=4 if workers else None, collate_fn=collate_fn)
        self._iter: Iterator | None = None
        self._next_step = -1

    def _transfer(self, batch) -> Batch:
        x, y = batch
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def batches(self, start_step: int, num_steps: int) -> Iterator[Batch]:
        if self._iter is None or self._next_step != start_step:
            self._sampler.start = start_step
            self._iter, self._next_step = iter(self._loader), start_step
        for _ in range(num_steps):
            x, y = self.finish(next_batch(self._iter))
            self._next_step += 1
            yield self.normalize(x, self.channels_last), y


def next_batch(batches: Iterator):
    """``next(batches)`` of a DataLoader, with a :class:`UserError` of a worker process as its one line (the
    DataLoader re-raises it with the worker's traceback in the message)."""
    try:
        return next(batches)
    except UserError as exc:
        line = str(exc).rstrip().splitlines()[-1]
        raise UserError(line.removeprefix(f"{UserError.__module__}.{UserError.__qualname__}: ")) from None


def loader_eval_batches(base: CheckedImageFolder, indices: Sequence[int], transform: Callable, batch_size: int,
                        normalize: Normalize, device: torch.device, workers: int = 8,
                        channels_last: bool = False) -> Iterator[Batch]:
    """Un-augmented batches of an ImageFolder subset, in order; unreadable images are left out."""
    loader = iter(torch.utils.data.DataLoader(_Plain(base, indices, transform), batch_size=batch_size,
                                              num_workers=workers, pin_memory=device.type == "cuda"))
    while True:
        try:
            x, y = next_batch(loader)
        except StopIteration:
            return
        keep = y >= 0
        if not keep.all():
            x, y = x[keep], y[keep]
        yield normalize(x.to(device, non_blocking=True), channels_last), y.to(device, non_blocking=True)


class _Plain(torch.utils.data.Dataset):
    """(transform(image), label) of a folder subset; an unreadable image gives a blank one labelled -1."""

    def __init__(self, base: CheckedImageFolder, indices: Sequence[int], transform: Callable) -> None:
        self.base, self.indices, self.transform = base, np.asarray(indices), transform
        self._skipped = (transform(Image.new("RGB", (1, 1))), -1)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = int(self.indices[i])
        if j not in self.base.unreadable:
            try:
                img, label = self.base[j]
                return self.transform(img), label
            except UNREADABLE as exc:
                self.base.unreadable.report(j, self.base.samples[j][0], exc)
        return self._skipped
