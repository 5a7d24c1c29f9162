"""Supernet training throughput (img/s) in the GPU space with a random path per step, on random data.

Variants, all in the same run on the same device:
  original      the original's loop: fp32, NCHW, zero_grad to zeros, then every all-zero gradient set to None by a
                per-parameter check (one host sync per parameter), clip by value, SGD step
  fp32          our SupernetTrainer step in fp32, NCHW
  bf16-cl       our default on CUDA: bf16 autocast + channels_last
  bf16-cl-compile  the same with every block compiled by torch.compile (compile time reported apart)

    python bench/bench_supernet.py                                 # H100: batch 128, 224x224
    python bench/bench_supernet.py --device cpu --batch 8 --size 64 --width 0.5 --steps 4 --warmup 2
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import RandomStream, device_name, report_variants, sync, throughput_parser  # noqa: E402  (bench/ is on the path)

from anglenas.nn import MobileSuperNet  # noqa: E402
from anglenas.spaces import GPU_SPACE  # noqa: E402
from anglenas.train.samplers import UniformPathSampler  # noqa: E402
from anglenas.train.supernet import SupernetTrainConfig, SupernetTrainer  # noqa: E402


class OnePath:
    def __init__(self, path: list[int]) -> None:
        self.path = path

    def paths(self, step: int) -> list[list[int]]:
        return [self.path]


def original_step(model, optimizer, criterion, x, y, path) -> None:
    """The original supernet step (spec §3.6): zero grads, backward, None-ify all-zero grads, clip, step."""
    optimizer.zero_grad(set_to_none=False)
    criterion(model(x, path), y).backward()
    for p in model.parameters():
        if p.grad is not None and torch.sum(torch.abs(p.grad)).item() == 0:
            p.grad = None
    torch.nn.utils.clip_grad_value_(model.parameters(), 5)
    optimizer.step()


def measure(variant: str, args, device: torch.device) -> tuple[float, float]:
    """(img/s, seconds spent compiling) of one variant."""
    torch.manual_seed(0)
    space = GPU_SPACE.scaled(args.width, args.size, 1000)
    model = MobileSuperNet(space)
    ops = space.initial_operations()
    amp, channels_last = variant.startswith("bf16"), variant.startswith("bf16-cl")
    cfg = SupernetTrainConfig(batch_size=args.batch, lr=0.25, amp=amp, channels_last=channels_last)
    stream = RandomStream(args.batch, args.size, device, channels_last)
    trainer = SupernetTrainer(model, UniformPathSampler(ops, 0), stream, cfg, 10 ** 6, device)
    compile_seconds = 0.0
    if variant.endswith("compile"):
        # every block shares InvertedResidual.forward: allow one graph per distinct block shape
        torch._dynamo.config.cache_size_limit = 256
        t0 = time.perf_counter()
        for layer in trainer.model.layers:
            for i, block in enumerate(layer.ops):
                layer.ops[i] = torch.compile(block, dynamic=False)
        sampler = trainer.sampler
        for op in range(6):  # compile every block now, so that compilation is not timed as training
            trainer.sampler = OnePath([op] * space.num_layers)
            trainer.step(0, stream.x, stream.y)
        trainer.sampler = sampler
        sync(device)
        compile_seconds = time.perf_counter() - t0
    sampler = UniformPathSampler(ops, 0)

    def run(steps: int, start: int) -> None:
        for step in range(start, start + steps):
            if variant == "original":
                original_step(trainer.model, trainer.optimizer, trainer.criterion, stream.x, stream.y,
                              sampler.paths(step)[0])
            else:
                trainer.step(step, stream.x, stream.y)

    run(args.warmup, 0)
    sync(device)
    t0 = time.perf_counter()
    run(args.steps, args.warmup)
    sync(device)
    return args.steps * args.batch / (time.perf_counter() - t0), compile_seconds


def main() -> None:
    parser = throughput_parser(__doc__, 128, 100, 20, "original,fp32,bf16-cl,bf16-cl-compile")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; batch {args.batch}, {args.size}x{args.size}, "
          f"width {args.width}, {args.steps} timed steps after {args.warmup} warm-up, random path per step")
    report_variants(args.variants.split(","), lambda variant: measure(variant, args, device))


if __name__ == "__main__":
    main()
