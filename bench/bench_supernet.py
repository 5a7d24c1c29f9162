"""Supernet training throughput (img/s) in the GPU space with a random path per step, on random data: the original's
loop against ours, and each speed lever of ours measured alone, all in one run on one device.

Variants (the first listed is the baseline of the printed ratios):
  original         the original's loop: fp32, NCHW, zero_grad to zeros, then every all-zero gradient set to None by
                   a per-parameter check (one host sync per parameter), clip by value, SGD step
  fp32             our SupernetTrainer step in fp32, NCHW: gradients reset to None, no host sync in the step
  bf16             + bf16 autocast (CUDA only; on the CPU it equals fp32)
  bf16-cl          + channels_last: our default on CUDA
  bf16-cl-hostdata the same with the batch copied from pinned host memory every step (what data on the device saves)
  bf16-cl-fused    + fused SGD (one kernel for the sampled parameters; unsampled ones keep grad None: untouched)
  bf16-cl-graphs   + every block captured as a CUDA graph, forward and backward (CUDA only; capture time apart)
  bf16-cl-compile  + every block compiled by torch.compile, shapes fixed (compile time reported apart)

None of them changes what is learned: the same path per step (a function of seed and step), and a parameter off
the path keeps grad None, so momentum and weight decay do not touch it. Before timing, every op of every layer runs
(one uniform path per op), then ``--warmup`` random-path steps.

    python bench/bench_supernet.py                                 # GPU: batch 128, 224x224, every variant
    python bench/bench_supernet.py --device cpu --batch 8 --size 64 --width 0.5 --steps 4 --warmup 1 \\
        --variants original,fp32,bf16-cl,bf16-cl-fused,bf16-cl-hostdata
"""
from __future__ import annotations

import time
from typing import Callable

import torch
from common import (  # bench/ is on the path of a bench script
    RandomStream,
    device_name,
    report_variants,
    sync,
    throughput_parser,
)

from anglenas.spaces import get_space
from anglenas.train.fast import fused_sgd
from anglenas.train.samplers import UniformPathSampler
from anglenas.train.supernet import SupernetTrainConfig, SupernetTrainer

VARIANTS = ("original", "fp32", "bf16", "bf16-cl", "bf16-cl-hostdata", "bf16-cl-fused", "bf16-cl-graphs",
            "bf16-cl-compile")
CUDA_ONLY = ("bf16-cl-graphs",)


class FixedPaths:
    """A sampler that serves the same path at every step (the warm-up of every op)."""

    def __init__(self, path: list[int]) -> None:
        self.path = path

    def paths(self, step: int) -> list[list[int]]:
        return [self.path]


def original_step(model, optimizer, criterion, x, y, path) -> None:
    """The original supernet step (``*/shrinking/train.py``): zero grads, backward, None-ify zero grads, clip, step."""
    optimizer.zero_grad(set_to_none=False)
    criterion(model(x, path), y).backward()
    for p in model.parameters():
        if p.grad is not None and torch.sum(torch.abs(p.grad)).item() == 0:
            p.grad = None
    torch.nn.utils.clip_grad_value_(model.parameters(), 5)
    optimizer.step()


def graph_blocks(trainer: SupernetTrainer, x: torch.Tensor, amp: bool) -> None:
    """Replace every block of every layer by a CUDA graph of its forward and backward (shapes fixed by ``x``)."""
    model = trainer.model
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        h = model.first_block(model.stem(x))  # the dtype and layout every block sees in training
    for layer in model.layers:
        sample = h.detach().requires_grad_(True)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            h = layer.ops[0](sample)
        for i, block in enumerate(layer.ops):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp, cache_enabled=False):
                layer.ops[i] = torch.cuda.make_graphed_callables(block, (sample,))


def compile_blocks(trainer: SupernetTrainer) -> None:
    """Compile every block of every layer with fixed shapes (one graph per distinct block)."""
    torch._dynamo.config.cache_size_limit = 256
    for layer in trainer.model.layers:
        for i, block in enumerate(layer.ops):
            layer.ops[i] = torch.compile(block, dynamic=False)


def measure(variant: str, batch: int, size: int, width: float, steps: int, warmup: int,
            device: torch.device) -> tuple[float, float]:
    """(img/s, seconds spent preparing: compiling or capturing) of one variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    if variant in CUDA_ONLY and device.type != "cuda":
        raise RuntimeError(f"{variant} needs CUDA")
    torch.manual_seed(0)
    space = get_space("gpu").scaled(width, size, 1000)
    ops = space.initial_operations()
    amp = variant.startswith("bf16")
    channels_last = variant.startswith("bf16-cl")
    cfg = SupernetTrainConfig(batch_size=batch, lr=0.25, amp=amp, channels_last=channels_last)
    stream = RandomStream(batch, size, device, channels_last)
    trainer = SupernetTrainer(space.supernet(), UniformPathSampler(ops, 0), stream, cfg, 10 ** 6, device)
    if variant.endswith("fused"):
        trainer.optimizer = fused_sgd(trainer.optimizer)
    x, y = stream.x, stream.y
    if variant.endswith("hostdata"):
        x = x.cpu().pin_memory() if device.type == "cuda" else x.clone()
    prepare_seconds = 0.0
    t0 = time.perf_counter()
    if variant.endswith("compile"):
        compile_blocks(trainer)
    elif variant.endswith("graphs"):
        graph_blocks(trainer, stream.x, amp)
    step: Callable[[int, list[int]], None]
    if variant == "original":
        def step(i: int, path: list[int]) -> None:
            original_step(trainer.model, trainer.optimizer, trainer.criterion, x, y, path)
    else:
        def step(i: int, path: list[int]) -> None:
            trainer.sampler = FixedPaths(path)
            xb = x.to(device, non_blocking=True) if x.device != device else x
            trainer.step(i, xb, y)

    all_ops = sorted({o for layer in ops for o in layer})
    every_op = [[op if op in layer else layer[0] for layer in ops] for op in all_ops]
    for i, path in enumerate(every_op):
        step(i, path)
    sync(device)
    if variant.endswith(("compile", "graphs")):
        prepare_seconds = time.perf_counter() - t0
    sampler = UniformPathSampler(ops, 0)
    for i in range(warmup):
        step(i, sampler.paths(i)[0])
    sync(device)
    t0 = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i, sampler.paths(i)[0])
    sync(device)
    return steps * batch / (time.perf_counter() - t0), prepare_seconds


def main() -> None:
    parser = throughput_parser(__doc__, 128, 50, 10, ",".join(VARIANTS))
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; batch {args.batch}, {args.size}x{args.size}, "
          f"width {args.width}, {args.steps} timed steps after every op and {args.warmup} random-path warm-up steps")
    report_variants(args.variants.split(","), lambda v: measure(v, args.batch, args.size, args.width, args.steps,
                                                                args.warmup, device))


if __name__ == "__main__":
    main()
