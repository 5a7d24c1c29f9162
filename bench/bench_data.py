"""Input pipeline throughput (img/s), to check that data loading does not bound GPU training.

1. The ImageNet training pipeline (JPEG decode, square random-resized crop, PCA lighting, flip, BGR conversion)
   over an ImageFolder of synthetic 500x375 JPEGs, for several worker counts, with the JPEGs decoded by PIL in
   the workers or on the training device (nvJPEG on a GPU; the workers then only read bytes).
2. The in-memory stream of CIFAR-size data (uint8 on the device, crop + flip + normalise there).

    python bench/bench_data.py --workers 0,2,8,16 --batch 128 --steps 40
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import images_per_second  # bench/ is on the path of a bench script
from PIL import Image

from anglenas.data import DataConfig, build_data
from anglenas.data.normalize import CIFAR_NORMALIZE
from anglenas.data.streams import TensorStream


def make_folder(root: Path, classes: int, per_class: int) -> None:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c:03d}").mkdir(parents=True)
        for i in range(per_class):
            # smooth random images compress like photos (~40 KB), not like noise
            small = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
            Image.fromarray(small).resize((500, 375), Image.BICUBIC).save(root / f"class{c:03d}" / f"{i}.jpg",
                                                                          quality=90)


def rate(stream, steps: int, device: torch.device) -> float:
    return images_per_second(stream.batches(0, steps + 2), steps, 2, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", default="0,2,8")
    parser.add_argument("--decode", default="workers,device", help="where JPEGs are decoded (see DataConfig)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=2000, help="synthetic JPEGs in the folder")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}; {os.cpu_count()} CPU cores; batch {args.batch}, {args.steps} timed batches")
    with tempfile.TemporaryDirectory() as tmp:
        make_folder(Path(tmp), 10, args.images // 10)
        for decode in args.decode.split(","):
            for workers in map(int, args.workers.split(",")):
                cfg = DataConfig(dataset="imagenet", train_dir=tmp, search_val_size=10, workers=workers,
                                 decode=decode)
                stream = build_data(cfg, device).train_stream(args.batch, seed=0, channels_last=True)
                print(f"ImageNet pipeline, decode on {decode:>7}, {workers:2d} workers: "
                      f"{rate(stream, args.steps, device):8.0f} img/s")
    images = torch.randint(0, 255, (50000, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (50000,), device=device)
    stream = TensorStream(images, labels, args.batch, 0, CIFAR_NORMALIZE)
    print(f"in-memory 32x32 stream on {device}: {rate(stream, args.steps * 10, device):8.0f} img/s")


if __name__ == "__main__":
    main()
