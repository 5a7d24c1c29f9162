"""Final-training throughput (img/s) of SPOS_ABS on random data, our step against a plain fp32 eager loop.

Variants, all in the same run on the same device and model:
  plain-fp32       a plain loop: fp32, NCHW, eager; zero_grad, forward, label-smoothed CE, backward,
                   clip_grad_norm, SGD step
  fp32-cl          our training step (anglenas.train.final.train_step) in fp32 with channels_last
  bf16-cl          our default on CUDA: bf16 autocast + channels_last
  bf16-cl-compile  the same under torch.compile (``--compile``; compile time reported apart)

    python bench/bench_train.py                                      # GPU: batch 256, 224x224
    python bench/bench_train.py --device cpu --batch 16 --size 64 --steps 5 --warmup 2 --variants plain-fp32,fp32-cl
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import device_name, report_variants, sync, throughput_parser  # noqa: E402  (bench/ is on the path)

from anglenas.archs import PUBLISHED  # noqa: E402
from anglenas.nn.network import MobileNetwork  # noqa: E402
from anglenas.spaces import get_space  # noqa: E402
from anglenas.train.final import train_step  # noqa: E402
from anglenas.train.optim import sgd  # noqa: E402


def plain_step(model, optimizer, criterion, x, y) -> None:
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()


def measure(variant: str, args, device: torch.device) -> tuple[float, float]:
    """(img/s, seconds spent compiling) of one variant."""
    torch.manual_seed(0)
    space_name, arch = PUBLISHED[args.arch]
    space = get_space(space_name).scaled(args.width, args.size)
    channels_last = variant.endswith("-cl") or "-cl-" in variant
    amp = variant.startswith("bf16")
    model = MobileNetwork(space, arch).to(device, memory_format=torch.channels_last if channels_last
                                          else torch.preserve_format)
    optimizer = sgd(model, 0.5, 0.9, 4e-5)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, space.num_classes, (args.batch,), device=device)
    params = list(model.parameters())
    net = model
    compile_seconds = 0.0
    if variant.endswith("compile"):
        net = torch.compile(model)
        t0 = time.perf_counter()
        train_step(net, optimizer, criterion, x, y, params, 5.0, amp)
        sync(device)
        compile_seconds = time.perf_counter() - t0

    def run(steps: int) -> None:
        for _ in range(steps):
            if variant == "plain-fp32":
                plain_step(model, optimizer, criterion, x, y)
            else:
                train_step(net, optimizer, criterion, x, y, params, 5.0, amp)

    run(args.warmup)
    sync(device)
    t0 = time.perf_counter()
    run(args.steps)
    sync(device)
    return args.steps * args.batch / (time.perf_counter() - t0), compile_seconds


def main() -> None:
    parser = throughput_parser(__doc__, 256, 50, 10, "plain-fp32,fp32-cl,bf16-cl,bf16-cl-compile")
    parser.add_argument("--arch", default="SPOS_ABS", choices=sorted(PUBLISHED))
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; {args.arch}, batch {args.batch}, "
          f"{args.size}x{args.size}, width {args.width}, {args.steps} timed steps after {args.warmup} warm-up")
    report_variants(args.variants.split(","), lambda variant: measure(variant, args, device))


if __name__ == "__main__":
    main()
