"""ProxylessNAS search cost: seconds per weight step and per architecture step (full_v2 and two), the seconds
per epoch they imply, and peak memory, on random data in the full GPU space (every op at every layer: the
worst case of a shrunk space).

An epoch is ``--train_images / --batch`` weight steps plus one architecture step every ``--every`` (the search
epochs; warm-up epochs have weight steps only). Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU,
the process's peak resident set on the CPU.

    python bench/bench_proxyless.py                                             # GPU: batch 256, 224x224
    python bench/bench_proxyless.py --device cpu --batch 16 --size 64 --width 0.5 --steps 3 --warmup 1
"""
from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import torch
from common import RandomStream, device_name, sync, throughput_parser  # bench/ is on the path of a bench script

from anglenas.operations import Operations
from anglenas.searchers.proxyless import ProxylessConfig, ProxylessSearch
from anglenas.spaces import get_space


def timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    """Mean seconds of ``fn(i)`` over ``steps`` calls after ``warmup`` untimed ones."""
    for i in range(warmup):
        fn(i)
    sync(device)
    t0 = time.perf_counter()
    for i in range(warmup, warmup + steps):
        fn(i)
    sync(device)
    return (time.perf_counter() - t0) / steps


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def main() -> None:
    parser = throughput_parser(__doc__, batch=256, steps=10, warmup=3, variants="full_v2,two")
    parser.add_argument("--every", type=int, default=5, help="weight steps per architecture step")
    parser.add_argument("--train_images", type=int, default=1_231_167 - 50_000,
                        help="images per epoch (default: ImageNet search-train)")
    args = parser.parse_args()
    device = torch.device(args.device)
    space = get_space("gpu")
    folder = Path(tempfile.mkdtemp())
    print(f"ProxylessNAS on {device_name(device)}: full GPU space, batch {args.batch}, {args.size}x{args.size}, "
          f"width {args.width}")
    steps_per_epoch = args.train_images // args.batch
    for mode in args.variants.split(","):
        cfg = ProxylessConfig(save=str(folder / mode), device=args.device, grad_binary_mode=mode,
                              width_mult=args.width, train_batch_size=args.batch)
        search = ProxylessSearch(cfg, Operations.full(space))
        stream = RandomStream(args.batch, args.size, device, cfg.channels_last)
        search.build(space.scaled(args.width, args.size, 1000), stream, stream)
        x, y = stream.x, stream.y
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        weight = timed(lambda i: search.weight_step(i, x, y), args.steps, args.warmup, device)
        weight_mem = peak_memory_gib(device)
        arch = timed(search.arch_step, args.steps, args.warmup, device)
        epoch = steps_per_epoch * (weight + arch / args.every)
        print(f"{mode:>8}: weight step {weight:.3f} s, arch step {arch:.3f} s -> search epoch of "
              f"{steps_per_epoch} steps {epoch:.0f} s ({epoch / 3600:.2f} h), warm-up epoch "
              f"{steps_per_epoch * weight:.0f} s; peak memory {weight_mem:.2f} GiB after weight steps, "
              f"{peak_memory_gib(device):.2f} GiB after arch steps")


if __name__ == "__main__":
    main()
