"""CIFAR-10 training-batch throughput (img/s): the device-resident loader against torchvision's DataLoader.

Both produce augmented, normalised float batches on ``--device``: the device loader gathers uint8 images held
there and augments them there (pipelines ``ffcv``: flip, translate 2, cutout 8; ``darts``: crop pad 4, flip);
the DataLoader runs torchvision's PIL transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor,
Normalize) in ``--workers`` processes and copies each batch to the device. Random images, so no download::

    python bench/bench_device_cifar.py --images 50000 --batch 256 --workers 0,4,8
"""
from __future__ import annotations

import argparse
import os
from typing import Iterator

import numpy as np
import torch
from common import images_per_second  # bench/ is on the path of a bench script
from PIL import Image

from anglenas.data.device_cifar import PIPELINES, DeviceLoader


class PilCifar(torch.utils.data.Dataset):
    """HWC uint8 arrays served as torchvision's CIFAR10 does: a PIL image through ``transform``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def torchvision_batches(images: np.ndarray, labels: np.ndarray, batch: int, workers: int,
                        device: torch.device) -> Iterator[torch.Tensor]:
    from torchvision import transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
    loader = torch.utils.data.DataLoader(PilCifar(images, labels, transform), batch_size=batch, shuffle=True,
                                         drop_last=True, num_workers=workers, pin_memory=device.type == "cuda",
                                         persistent_workers=workers > 0)
    while True:
        for x, _ in loader:
            yield x.to(device, non_blocking=True)


def device_batches(images: np.ndarray, labels: np.ndarray, batch: int, pipeline: str,
                   device: torch.device) -> Iterator[torch.Tensor]:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    loader = DeviceLoader(x, torch.from_numpy(labels).to(device), batch, seed=0, pipeline=PIPELINES[pipeline],
                          half=device.type == "cuda")
    epoch = 0
    while True:
        for xb, _ in loader.passes((epoch,)):
            yield xb
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50, help="timed batches per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", default="0,4,8", help="DataLoader worker counts to compare")
    args = parser.parse_args()
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images)
    print(f"device {device}; {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads; "
          f"{args.images} images, batch {args.batch}, {args.steps} timed batches")
    for pipeline in PIPELINES:
        batches = device_batches(images, labels, args.batch, pipeline, device)
        r = images_per_second(batches, args.steps, args.warmup, device)
        print(f"device loader ({pipeline:5s} pipeline)       : {r:10.0f} img/s")
    for workers in map(int, args.workers.split(",")):
        batches = torchvision_batches(images, labels, args.batch, workers, device)
        r = images_per_second(batches, args.steps, args.warmup, device)
        print(f"torchvision DataLoader, {workers:2d} workers    : {r:10.0f} img/s")


if __name__ == "__main__":
    main()
