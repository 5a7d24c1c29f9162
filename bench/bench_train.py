"""Final-training throughput (img/s) of SPOS_ABS on random data, our step against a plain fp32 eager loop.

Variants, all in the same run on the same device and model:
  plain-fp32       a plain loop: fp32, NCHW, eager; zero_grad, forward, label-smoothed CE, backward,
                   clip_grad_norm, SGD step
  fp32-cl          our training step (anglenas.stages.train.train_step) in fp32 with channels_last
  bf16-cl          our default on CUDA: bf16 autocast + channels_last
  bf16-cl-compile  the same under torch.compile (``--compile``; compile time reported apart)

    python bench/bench_train.py                                      # GPU: batch 256, 224x224
    python bench/bench_train.py --device cpu --batch 16 --size 64 --steps 5 --warmup 2 --variants plain-fp32,fp32-cl
"""
from __future__ import annotations

import torch
from common import (  # bench/ is on the path of a bench script
    device_name,
    final_train_rate,
    report_variants,
    throughput_parser,
)

from anglenas.archs import published


def main() -> None:
    parser = throughput_parser(__doc__, 256, 50, 10, "plain-fp32,fp32-cl,bf16-cl,bf16-cl-compile")
    parser.add_argument("--arch", default="SPOS_ABS", choices=sorted(published()))
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; {args.arch}, batch {args.batch}, "
          f"{args.size}x{args.size}, width {args.width}, {args.steps} timed steps after {args.warmup} warm-up")
    report_variants(args.variants.split(","), lambda variant: final_train_rate(
        variant, args.arch, args.batch, args.size, args.width, args.steps, args.warmup, device))


if __name__ == "__main__":
    main()
