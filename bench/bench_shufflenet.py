"""ShuffleNetV2 (SPOS space) supernet training throughput (img/s), a random path per step, on random data.

Variants, all in the same run on the same device:
  plain      a plain fp32 loop: forward the step's path, cross-entropy, backward, torch SGD step
  fp32       our SupernetTrainer step in fp32, NCHW (label smoothing, clip by value, per-step LR)
  bf16-cl    our default on CUDA: bf16 autocast + channels_last

    python bench/bench_shufflenet.py                                            # GPU: batch 128, 224x224
    OMP_NUM_THREADS=1 python bench/bench_shufflenet.py --device cpu --batch 16 --size 64 --width 0.5 --steps 6 \
        --warmup 2      # CPU (on a shared machine one thread is far faster than several contending ones)

On the CPU, bf16 autocast is off (the trainer enables it on CUDA only): bf16-cl measures channels_last in fp32.
"""
from __future__ import annotations

import time

import torch
from common import (  # bench/ is on the path of a bench script
    RandomStream,
    device_name,
    report_variants,
    sync,
    throughput_parser,
)
from torch import nn

from anglenas.spaces import get_space
from anglenas.train.supernet import SupernetTrainConfig, SupernetTrainer


def measure(variant: str, args, device: torch.device) -> tuple[float, float]:
    """(img/s, seconds spent compiling: always 0 here) of one variant."""
    torch.manual_seed(0)
    space = get_space("shufflenetv2").scaled(args.width, args.size, 1000)
    model = space.supernet()
    sampler = space.train_sampler(space.initial_operations(), 0)
    channels_last = variant == "bf16-cl"
    stream = RandomStream(args.batch, args.size, device, channels_last)
    if variant == "plain":
        model = model.to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.25, momentum=0.9, weight_decay=4e-5)
        criterion = nn.CrossEntropyLoss()

        def step(i: int) -> None:
            optimizer.zero_grad(set_to_none=True)
            criterion(model(stream.x, sampler.paths(i)[0]), stream.y).backward()
            optimizer.step()
    else:
        cfg = SupernetTrainConfig(batch_size=args.batch, lr=0.25, amp=variant == "bf16-cl", channels_last=channels_last)
        trainer = SupernetTrainer(model, sampler, stream, cfg, 10 ** 6, device)

        def step(i: int) -> None:
            trainer.step(i, stream.x, stream.y)

    for i in range(args.warmup):
        step(i)
    sync(device)
    t0 = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        step(i)
    sync(device)
    return args.steps * args.batch / (time.perf_counter() - t0), 0.0


def main() -> None:
    parser = throughput_parser(__doc__, 128, 100, 20, "plain,fp32,bf16-cl")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; SPOS ShuffleNetV2 supernet, batch {args.batch}, "
          f"{args.size}x{args.size}, width {args.width}, {args.steps} timed steps after {args.warmup} warm-up, "
          f"random path per step")
    report_variants(args.variants.split(","), lambda variant: measure(variant, args, device))


if __name__ == "__main__":
    main()
