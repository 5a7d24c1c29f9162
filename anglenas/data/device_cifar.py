"""CIFAR-10 held on the device as uint8 [N, 3, 32, 32], augmented there per batch (afzalxo/PertNAS
``dataloader/ffcv_cifar10loader.py``).

The original feeds its search through FFCV (``.beton`` files, conda-only libraries). Here the whole set lives on
the training device (50,000 x 3 x 32 x 32 uint8 = 150 MB) and each batch is gathered, augmented and normalised
there; the same code runs on CPU tensors. Pipelines:

- ``ffcv`` (the PertNAS search): horizontal flip p=0.5, random translate by up to ``pad``=2 pixels with a
  black border (a 32x32 crop of the zero-padded 36x36 image), ``Cutout(8)`` always inside the image, filled with
  the integer mean (125, 122, 113), normalisation with the FFCV mean/std on the 0-255 scale;
- ``darts``: random crop with zero padding 4 and a flip, normalisation with the CIFAR mean/std (no cutout).

Every random draw (epoch order, offsets, flips, cutout corners) comes from a CPU generator seeded by the
loader's seed and the caller's pass key, so a pass is a pure function of (seed, key) on any device. Sources: the
python-pickle folder, the JPEG tarball, the embedded mini set, or a folder of ``cifar_{train,test}.beton`` files
when ``ffcv`` is importable.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from anglenas.data.augment import Pipeline, apply_augment, draw_augment
from anglenas.data.normalize import CIFAR_NORMALIZE, Normalize
from anglenas.data.sources import (
    ImageArrays,
    load_cifar_pickles,
    load_embedded,
    load_jpeg_tar,
    split_indices,
    to_tensor_nchw,
)
from anglenas.data.streams import Batch, step_seed, tensor_eval_batches
from anglenas.errors import UserError

FFCV_NORMALIZE = Normalize((125.307, 122.961, 113.8575), (51.5865, 50.847, 51.255))
FFCV_CUTOUT_FILL = (125, 122, 113)


PIPELINES = {
    "ffcv": Pipeline(flip=True, pad=2, cutout=8, cutout_fill=FFCV_CUTOUT_FILL, normalize=FFCV_NORMALIZE),
    "darts": Pipeline(flip=True, pad=4, cutout=0, cutout_fill=(0, 0, 0), normalize=CIFAR_NORMALIZE),
}


class DeviceLoader:
    """Batches of uint8 images held on their device: shuffled and augmented (training) or in order (evaluation).

    ``passes(key)`` is one shuffled pass (``drop_last``) whose order and augmentation depend only on
    ``(seed, *key)``; ``half`` gives fp16 batches as FFCV does (use it with autocast on a GPU).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                 pipeline: Pipeline, half: bool = False, channels_last: bool = False) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError("images must be uint8 [N, 3, H, W]")
        if len(images) < batch_size:
            raise UserError(f"{len(images)} training images are fewer than one batch of {batch_size}; "
                            f"lower --batch_size")
        self.images, self.labels = images, labels.to(images.device)
        self.batch_size, self.seed, self.pipeline = batch_size, seed, pipeline
        self.half, self.channels_last = half, channels_last

    @property
    def steps_per_epoch(self) -> int:
        return len(self.labels) // self.batch_size

    def batch(self, index: torch.Tensor, gen: torch.Generator) -> Batch:
        """The augmented, normalised images and labels at ``index`` (CPU int64)."""
        idx = index.to(self.images.device)
        draw = draw_augment(len(index), self.images.shape[-1], self.pipeline, gen)
        x = self.pipeline.normalize(apply_augment(self.images[idx], draw, self.pipeline), self.channels_last)
        return (x.half() if self.half else x), self.labels[idx]

    def passes(self, key: Sequence[int], num_steps: int | None = None) -> Iterator[Batch]:
        """``num_steps`` batches (default: one epoch) of passes keyed by ``(seed, *key, pass number)``; a new
        permutation each time a pass runs out."""
        total = self.steps_per_epoch if num_steps is None else num_steps
        done, epoch = 0, 0
        while done < total:
            gen = torch.Generator().manual_seed(step_seed(self.seed, *key, epoch))
            perm = torch.randperm(len(self.labels), generator=gen)
            for step in range(min(self.steps_per_epoch, total - done)):
                yield self.batch(perm[step * self.batch_size: (step + 1) * self.batch_size], gen)
                done += 1
            epoch += 1


def eval_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, pipeline: Pipeline,
                 half: bool = False, channels_last: bool = False) -> Iterator[Batch]:
    """Un-augmented, normalised batches in order (the last one partial)."""
    for x, y in tensor_eval_batches(images, labels, batch_size, pipeline.normalize, channels_last):
        yield (x.half() if half else x), y


@dataclass
class DeviceCifar:
    """Train / val / test uint8 tensors of one dataset on one device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int


def load_device_cifar(source: str, device: torch.device | str, val_size: int = 5000, split_seed: int = 0,
                      cache_dir: str | Path | None = None) -> DeviceCifar:
    """CIFAR-10 from ``source`` on ``device``; ``val_size`` training images are held out as validation (0: none,
    then val is the test set).

    ``source``: ``embedded``; a JPEG tarball (``*.tar.gz``); a folder holding ``cifar_train.beton`` and
    ``cifar_test.beton`` (needs ``ffcv``), ``cifar10-jpg.tar.gz``, or the python-pickle ``cifar-10-batches-py``.
    """
    sets = read_source(source, cache_dir)
    train, test = sets["train"], sets["test"]
    if val_size:
        tr, va = split_indices(len(train), val_size, split_seed)
        train, val = train.subset(tr), train.subset(va)
    else:
        val = test
    dev = torch.device(device)

    def tensors(arrays: ImageArrays) -> tuple[torch.Tensor, torch.Tensor]:
        return to_tensor_nchw(arrays.images, dev), torch.from_numpy(arrays.labels).to(dev)

    return DeviceCifar(*tensors(train), *tensors(val), *tensors(test), num_classes=len(train.classes))


def read_source(source: str, cache_dir: str | Path | None = None) -> dict[str, ImageArrays]:
    """``{"train": ImageArrays, "test": ImageArrays}`` from a CIFAR-10 source (see :func:`load_device_cifar`)."""
    if source in ("", "embedded"):
        return load_embedded()
    path = Path(source)
    if path.is_file():
        return load_jpeg_tar(path, cache_dir)
    if not path.is_dir():
        raise UserError(f"CIFAR-10 source {source} does not exist; pass 'embedded', the JPEG tarball, or a folder "
                        f"with cifar-10-batches-py/ or cifar_{{train,test}}.beton")
    if (path / "cifar_train.beton").is_file():
        return read_beton(path)
    if (path / "cifar10-jpg.tar.gz").is_file():
        return load_jpeg_tar(path / "cifar10-jpg.tar.gz", cache_dir)
    if path.name == "cifar-10-batches-py":
        path = path.parent
    return load_cifar_pickles(path, 10)


def read_beton(folder: Path) -> dict[str, ImageArrays]:
    """Decode ``cifar_train.beton`` / ``cifar_test.beton`` (written by FFCV's CIFAR example) into memory."""
    try:
        from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
        from ffcv.loader import Loader, OrderOption
    except ImportError:
        raise UserError(f"{folder} holds .beton files but ffcv is not installed; pass the python-pickle folder or "
                        f"the JPEG tarball instead") from None
    from anglenas.data.sources import CIFAR10_CLASSES

    out = {}
    for split in ("train", "test"):
        loader = Loader(str(folder / f"cifar_{split}.beton"), batch_size=1000, order=OrderOption.SEQUENTIAL,
                        num_workers=1, pipelines={"image": [SimpleRGBImageDecoder()], "label": [IntDecoder()]})
        xs, ys = zip(*[(np.asarray(x), np.asarray(y).reshape(-1)) for x, y in loader])
        out[split] = ImageArrays(np.concatenate(xs).astype(np.uint8), np.concatenate(ys).astype(np.int64),
                                 CIFAR10_CLASSES)
    return out
