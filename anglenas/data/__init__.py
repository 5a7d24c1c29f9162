"""Datasets of every stage behind one object: :func:`build_data` gives training streams and eval batches.

Sources: ``embedded`` (2,000 + 500 real CIFAR-10 images shipped in the package: the tests' default),
``embedded-12k`` (10,000 + 2,000 shipped images: ``make demo``),
``imagenet`` (ImageFolder ``--train_dir`` / ``--test_dir``), ``cifar10`` / ``cifar100`` (python-pickle folder in
``--data_dir``) and ``cifar10-jpg`` (a ``{train,test}/<class>/*.jpg`` tarball in ``--data_dir``). For searching,
a deterministic ``search_val_size`` subset of the training images is held out as "search-val".
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from anglenas.config import field
from anglenas.data import transforms
from anglenas.data.jpeg import DeviceAugment, JpegBytes, collate_bytes
from anglenas.data.normalize import CIFAR_NORMALIZE, ORIGINAL_IMAGENET, Normalize
from anglenas.data.sources import (
    ImageArrays,
    check_same_classes,
    image_folder,
    load_cifar_pickles,
    load_embedded,
    load_jpeg_tar,
    split_indices,
    to_tensor_nchw,
)
from anglenas.data.streams import (
    Batch,
    BatchStream,
    LoaderStream,
    SeededTransform,
    TensorStream,
    loader_eval_batches,
    tensor_eval_batches,
)
from anglenas.errors import UserError

DATASETS = ("embedded", "embedded-12k", "imagenet", "cifar10", "cifar100", "cifar10-jpg", "auto")
EMBEDDED_12K = Path(__file__).with_name("cifar10-jpg-demo.tar.gz")
"""10,000 + 2,000 real CIFAR-10 images shipped with the package: the data of ``make demo``."""
CACHE_DIR = Path(os.environ.get("ANGLENAS_CACHE", Path.home() / ".cache" / "anglenas"))

__all__ = ["DATASETS", "Batch", "BatchStream", "Data", "DataConfig", "Normalize", "build_data"]


@dataclass
class DataConfig:
    """Where the images come from (shared by every stage)."""

    dataset: str = field("imagenet", "image source", choices=DATASETS)
    train_dir: str = field("", "ImageNet train folder (one sub-folder per class)")
    test_dir: str = field("", "ImageNet val folder (one sub-folder per class)")
    data_dir: str = field("", "CIFAR python-pickle folder, or the CIFAR-10 JPEG tarball for cifar10-jpg")
    search_val_size: int | None = field(None, "training images held out as search-val "
                                              "(default: 50000 for ImageNet, 10%% of train otherwise)", low=1)
    split_seed: int = field(0, "seed of the search-train / search-val split (keep it equal across stages)", low=0)
    resolution: int | None = field(None, "in-memory datasets: resize the images once to this side (default: as "
                                         "stored, 32 for CIFAR)", low=4)
    train_limit: int | None = field(None, "in-memory datasets: a fixed random subset of this many training images "
                                          "(default: all)", low=1)
    workers: int = field(8, "DataLoader worker processes per rank (ImageNet)", low=0)
    decode: str = field("auto", "where ImageNet training JPEGs are decoded: workers (PIL), device (torchvision, "
                                "nvJPEG on a GPU), auto (device on CUDA, else workers)",
                        choices=("auto", "workers", "device"))


class Data:
    """Training and evaluation batches of one dataset on one device.

    ``held_out=True`` (shrinking and searching): training uses search-train, ``val_batches`` is search-val.
    ``held_out=False`` (final training): training uses the whole train set, ``val_batches`` is the test set.
    """

    def __init__(self, cfg: DataConfig, device: torch.device, held_out: bool = True, train: bool = True) -> None:
        self.cfg, self.device, self.held_out, self.train = cfg, device, held_out, train
        self.folder = None
        if cfg.dataset == "imagenet":
            self._init_folder()
        else:
            self._init_arrays()

    # -- sources ------------------------------------------------------------------------------------------------
    def _init_arrays(self) -> None:
        cfg = self.cfg
        if cfg.dataset == "embedded":
            sets = load_embedded()
        elif cfg.dataset == "embedded-12k":
            sets = load_jpeg_tar(EMBEDDED_12K, cache_dir=CACHE_DIR)
        elif cfg.dataset == "cifar10-jpg":
            if not cfg.data_dir:
                raise UserError("--dataset cifar10-jpg needs --data_dir pointing at the JPEG tarball")
            sets = load_jpeg_tar(cfg.data_dir, cache_dir=CACHE_DIR)
        else:
            if not cfg.data_dir:
                raise UserError(f"--dataset {cfg.dataset} needs --data_dir (the folder holding the python version)")
            sets = load_cifar_pickles(cfg.data_dir, 10 if cfg.dataset == "cifar10" else 100)
        train, test = sets["train"], sets["test"]
        if cfg.train_limit and cfg.train_limit < len(train):
            train = train.subset(np.sort(np.random.default_rng([cfg.split_seed, 2]).permutation(len(train))
                                         [:cfg.train_limit]))
        if self.held_out:
            held = cfg.search_val_size or max(1, len(train) // 10)
            tr, va = split_indices(len(train), held, cfg.split_seed)
            train, test = train.subset(tr), train.subset(va)
        self.num_classes, self.input_size = len(train.classes), cfg.resolution or train.images.shape[1]
        self.normalize = CIFAR_NORMALIZE
        self._train: ImageArrays = train.resized(self.input_size)
        self._val: ImageArrays = test.resized(self.input_size)
        self._train_x = to_tensor_nchw(self._train.images, self.device)
        self._val_x = to_tensor_nchw(self._val.images, self.device)
        self._train_y = torch.from_numpy(train.labels)

    def _init_folder(self) -> None:
        cfg = self.cfg
        if not self.train and not self.held_out:  # evaluation only: the test folder is all it needs
            if not cfg.test_dir:
                raise UserError("evaluation on ImageNet needs --test_dir (the val folder)")
            self.folder = self._val_folder = image_folder(cfg.test_dir)
            self.num_classes, self.input_size, self.normalize = len(self.folder.classes), 224, ORIGINAL_IMAGENET
            self._train_idx, self._val_idx = np.arange(0), np.arange(len(self.folder))
            return
        if not cfg.train_dir:
            raise UserError("--dataset imagenet needs --train_dir (and --test_dir for final training)")
        self.folder = image_folder(cfg.train_dir)
        self.num_classes, self.input_size, self.normalize = len(self.folder.classes), 224, ORIGINAL_IMAGENET
        n = len(self.folder)
        if self.held_out:
            self._train_idx, self._val_idx = split_indices(n, cfg.search_val_size or 50000, cfg.split_seed)
            self._val_folder = self.folder
        else:
            if not cfg.test_dir:
                raise UserError("final training on ImageNet needs --test_dir")
            self._train_idx = np.arange(n)
            self._val_folder = image_folder(cfg.test_dir)
            check_same_classes(self.folder, self._val_folder)
            self._val_idx = np.arange(len(self._val_folder))

    # -- batches ------------------------------------------------------------------------------------------------
    @property
    def train_arrays(self) -> ImageArrays:
        """The training images in memory (CIFAR-like datasets; not ImageNet folders)."""
        if self.folder is not None:
            raise UserError("this searcher needs an in-memory dataset (embedded, cifar10, cifar100, cifar10-jpg)")
        return self._train

    @property
    def num_train(self) -> int:
        return len(self._train_idx) if self.folder is not None else len(self._train)

    @property
    def num_val(self) -> int:
        return len(self._val_idx) if self.folder is not None else len(self._val)

    def train_stream(self, global_batch: int, seed: int, rank: int = 0, world: int = 1,
                     channels_last: bool = False) -> BatchStream:
        """Augmented training batches addressed by global step (see :mod:`anglenas.data.streams`)."""
        try:
            if self.folder is not None:
                on_device = self.cfg.decode == "device" or (self.cfg.decode == "auto" and self.device.type == "cuda")
                if on_device:
                    return LoaderStream(JpegBytes(self.folder, self._train_idx), global_batch, seed, self.normalize,
                                        self.device, rank, world, self.cfg.workers, channels_last,
                                        collate_fn=collate_bytes, finish=DeviceAugment(self.device, folder=self.folder))
                return LoaderStream(SeededTransform(self.folder, self._train_idx, transforms.imagenet_train),
                                    global_batch, seed, self.normalize, self.device, rank, world, self.cfg.workers,
                                    channels_last)
            return TensorStream(self._train_x, self._train_y, global_batch, seed, self.normalize, rank, world,
                                channels_last=channels_last)
        except ValueError as exc:
            raise UserError(f"{exc}; lower --batch_size") from None

    def val_stream(self, global_batch: int, seed: int, channels_last: bool = False) -> BatchStream:
        """Shuffled, un-augmented evaluation batches (search-val or test) addressed by step, like a training stream
        (the architecture steps of DARTS-like searchers)."""
        if self.folder is not None:
            return LoaderStream(SeededTransform(self._val_folder, self._val_idx, _eval_transform), global_batch, seed,
                                self.normalize, self.device, workers=self.cfg.workers, channels_last=channels_last)
        return TensorStream(self._val_x, torch.from_numpy(self._val.labels), global_batch, seed, self.normalize, pad=0,
                            flip=False, channels_last=channels_last)

    def val_batches(self, batch_size: int, channels_last: bool = False, limit: int | None = None) -> Iterator[Batch]:
        """Un-augmented evaluation batches: search-val (``held_out``) or the test set; ``limit`` images at most, a
        fixed random subset (folders are sorted by class, so the first ``limit`` images could be a single class)."""
        if self.folder is not None:
            idx = self._val_idx[eval_subset(len(self._val_idx), limit)]
            return loader_eval_batches(self._val_folder, idx, transforms.imagenet_eval, batch_size, self.normalize,
                                       self.device, self.cfg.workers, channels_last)
        sub = eval_subset(len(self._val), limit)
        return tensor_eval_batches(self._val_x[torch.from_numpy(sub).to(self.device)],
                                   torch.from_numpy(self._val.labels[sub]), batch_size, self.normalize, channels_last)


def _eval_transform(img, rng):  # module level: picklable for DataLoader workers
    return transforms.imagenet_eval(img)


def eval_subset(n: int, limit: int | None) -> np.ndarray:
    """Indices of all ``n`` images, or of a fixed (seed 0) random subset of ``limit`` of them, in ascending order."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).permutation(n)[:limit])


def build_data(cfg: DataConfig, device: torch.device | str = "cpu", held_out: bool = True,
               train: bool = True) -> Data:
    """The dataset of ``cfg`` on ``device`` (see :class:`Data`); ``train=False``: evaluation only (ImageNet then
    needs only ``--test_dir``). ``auto``: the CIFAR-10 JPEG tarball when ``--data_dir`` is a file, else its python
    folder (DARTS' ``--data``)."""
    if cfg.dataset == "auto":
        if not cfg.data_dir:
            raise UserError("no data: pass --data_dir (the CIFAR-10 python folder, or the cifar10-jpg tarball), "
                            "--dataset embedded, or --demo")
        cfg = dataclasses.replace(cfg, dataset="cifar10-jpg" if Path(cfg.data_dir).is_file() else "cifar10")
    return Data(cfg, torch.device(device), held_out, train)
