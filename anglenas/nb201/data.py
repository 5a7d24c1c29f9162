"""NAS-Bench-201 search data, decoded once and kept on the training device (airbench-style).

- CIFAR-10 (``cifar10-jpg`` tarball, ``cifar10`` python pickles): the training set is split deterministically
  in two halves, as NB201 does (25k train / 25k valid). The ``embedded`` demo set (2,000 + 500 images) trains
  on all its training images and uses its test images as valid. NB201's
  own ``cifar-split.txt`` cannot be applied to the JPEG copy, whose file order is not the original batch order.
- CIFAR-100 (python pickles) and ImageNet16-120 (NB201's ``train_data_batch_*`` / ``val_data`` pickles, the
  first 120 classes): the whole training set, and half of the test / val set as valid (NB201's ``x-valid``).

Training batches are cut and augmented (random crop with padding, flip) on the device by
:class:`anglenas.data.streams.TensorStream`; nothing is decoded or copied per step.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anglenas.config import field
from anglenas.data import CACHE_DIR
from anglenas.data.normalize import CIFAR_NORMALIZE, Normalize
from anglenas.data.sources import (
    ImageArrays,
    load_cifar_pickles,
    load_embedded,
    load_jpeg_tar,
    resize_images,
    split_indices,
    to_tensor_nchw,
)
from anglenas.data.streams import Batch, TensorStream, tensor_eval_batches
from anglenas.errors import UserError

DATASETS = ("embedded", "cifar10-jpg", "cifar10", "cifar100", "ImageNet16-120")
GROUND_TRUTH = {"embedded": "cifar10", "cifar10-jpg": "cifar10", "cifar10": "cifar10", "cifar100": "cifar100",
                "ImageNet16-120": "ImageNet16-120"}
"""The benchmark column each training set is ranked against."""
IMAGENET16_NORMALIZE = Normalize((122.68, 116.66, 104.01), (63.22, 61.26, 65.09))


@dataclass
class NB201DataConfig:
    """The dataset of an NB201 experiment."""

    dataset: str = field("cifar10-jpg", "training data", choices=DATASETS)
    data_dir: str = field("", "cifar10-jpg: the JPEG tarball; cifar10/cifar100: the python-pickle folder; "
                              "ImageNet16-120: the folder of train_data_batch_* and val_data")
    split_seed: int = field(0, "seed of the deterministic train/valid split", low=0)
    resolution: int | None = field(None, "input side in pixels (default: the dataset's, 32 or 16); smaller "
                                         "values downscale the images once, on the device", low=4)


def load_imagenet16(root: str | Path, classes: int = 120) -> dict[str, ImageArrays]:
    """NB201's ImageNet16 pickles (``train_data_batch_1..10``, ``val_data``; labels 1..1000), first ``classes``."""
    root = Path(root)
    files = {"train": [root / f"train_data_batch_{i}" for i in range(1, 11)], "test": [root / "val_data"]}
    missing = [str(p) for group in files.values() for p in group if not p.is_file()]
    if missing:
        raise UserError(f"ImageNet16-120 needs NB201's pickles in {root}; missing {', '.join(missing[:3])}")
    out = {}
    for split, paths in files.items():
        xs, ys = [], []
        for path in paths:
            with open(path, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
            labels = np.asarray(entry["labels"], dtype=np.int64) - 1
            keep = labels < classes
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 16, 16)[keep].transpose(0, 2, 3, 1))
            ys.append(labels[keep])
        out[split] = ImageArrays(np.concatenate(xs), np.concatenate(ys), tuple(str(i) for i in range(classes)))
    return out


def load_sets(dataset: str, data_dir: str) -> dict[str, ImageArrays]:
    """Train and test arrays of an NB201 dataset: embedded, cifar10-jpg (tarball), cifar10 / cifar100 (pickle
    folders) or ImageNet16-120 (NB201's pickles)."""
    if dataset == "embedded":
        return load_embedded()
    if not data_dir:
        raise UserError(f"--dataset {dataset} needs --data_dir (see --help)")
    if dataset == "cifar10-jpg":
        return load_jpeg_tar(data_dir, cache_dir=CACHE_DIR)
    if dataset == "ImageNet16-120":
        return load_imagenet16(data_dir)
    return load_cifar_pickles(data_dir, 10 if dataset == "cifar10" else 100)


class NB201Data:
    """Train / valid images of one dataset on ``device`` as uint8 NCHW tensors."""

    def __init__(self, cfg: NB201DataConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.ground_truth = GROUND_TRUTH[cfg.dataset]
        sets = load_sets(cfg.dataset, cfg.data_dir)
        train, test = sets["train"], sets["test"]
        if cfg.dataset == "embedded":  # the demo set: all 2,000 training images, the 500 test images as valid
            valid = test
        elif self.ground_truth == "cifar10":  # two halves of the training set
            tr, va = split_indices(len(train), len(train) // 2, cfg.split_seed)
            train, valid = train.subset(tr), train.subset(va)
        else:  # NB201's x-valid: half of the test / val set
            valid = test.subset(split_indices(len(test), len(test) // 2, cfg.split_seed)[1])
        # the files are grouped by class: shuffle valid once, so that its first `limit` images are a fair sample
        valid = valid.subset(np.random.default_rng([cfg.split_seed, 1]).permutation(len(valid)))
        self.num_classes = len(train.classes)
        self.normalize = IMAGENET16_NORMALIZE if cfg.dataset == "ImageNet16-120" else CIFAR_NORMALIZE
        size = cfg.resolution or train.images.shape[1]
        self.train_x = resize_images(to_tensor_nchw(train.images, device), size)
        self.valid_x = resize_images(to_tensor_nchw(valid.images, device), size)
        self.train_y = torch.from_numpy(train.labels).to(device)
        self.valid_y = torch.from_numpy(valid.labels).to(device)
        self.input_size = size
        self.pad = 2 if size <= 16 else 4  # NB201: 4 for 32x32 CIFAR, 2 for 16x16 ImageNet16

    def train_stream(self, batch_size: int, seed: int, channels_last: bool = False) -> TensorStream:
        """Augmented training batches addressed by step (crop with padding + flip, on the device)."""
        if len(self.train_y) < batch_size:
            raise UserError(f"the training set has {len(self.train_y)} images, fewer than --batch_size {batch_size}")
        return TensorStream(self.train_x, self.train_y, batch_size, seed, self.normalize, pad=self.pad,
                            channels_last=channels_last)

    def valid_batches(self, batch_size: int, limit: int | None = None, channels_last: bool = False) -> list[Batch]:
        """The first ``limit`` valid images, un-augmented."""
        return list(tensor_eval_batches(self.valid_x[:limit], self.valid_y[:limit], batch_size, self.normalize,
                                        channels_last))

    def rebn_batches(self, batch_size: int, images: int, channels_last: bool = False) -> list[Batch]:
        """A fixed set of un-augmented training images (``images`` rounded down to whole batches) for ReBN."""
        n = max(batch_size, images // batch_size * batch_size)
        idx = torch.from_numpy(np.random.default_rng(12345).permutation(len(self.train_y))[:n]).to(self.device)
        return list(tensor_eval_batches(self.train_x[idx], self.train_y[idx], batch_size, self.normalize,
                                        channels_last))

