"""DARTS search cost: seconds per step (and per CIFAR-10 epoch) and peak memory of first- and second-order search,
fp32 against bf16 autocast, on random data with the real training step (architecture step, then weight step).

Variants: first-fp32, first-bf16, second-fp32, second-bf16 (bf16 only on CUDA). Each runs in its own process so its
peak memory is its own: CUDA max_memory_allocated, or the process' peak RSS on the CPU. The epoch time is the step
time x the steps of one epoch of upstream's split (25,000 weight images / batch).

    python bench/bench_darts.py                                   # GPU: batch 64, C=16, 8 cells (the paper's size)
    python bench/bench_darts.py --device cpu --batch 8 --channels 4 --layers 5 --steps 3 --warmup 1
    python bench/bench_darts.py --full ...                        # all 8 ops per edge instead of ABS' 2
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from types import SimpleNamespace

import torch
from common import RandomStream, device_name, sync  # bench/ is on the path of a bench script

from anglenas.searchers.darts.architect import Architect
from anglenas.searchers.darts.searchdata import train_epoch
from anglenas.spaces.darts.model_search import SearchNetwork
from anglenas.train.supernet import autocast_context

ABS_OPS = [[0, 4], [3, 6], [1, 5], [4, 7], [2, 6], [0, 5], [3, 4], [6, 7], [1, 4], [0, 7], [5, 6], [3, 5], [2, 4],
           [4, 6]]
WEIGHT_IMAGES = 25000


def measure(args: argparse.Namespace, variant: str) -> dict:
    """Time ``args.steps`` search steps of one variant after ``args.warmup`` steps."""
    device = torch.device(args.device)
    order, precision = variant.split("-")
    amp = precision == "bf16"
    if amp and device.type != "cuda":
        return {"skipped": "bf16 autocast is CUDA only"}
    torch.manual_seed(0)
    model = SearchNetwork(args.channels, 10, args.layers, None if args.full else ABS_OPS).to(device)
    optimizer = torch.optim.SGD(model.weights(), 0.025, momentum=0.9, weight_decay=3e-4)
    architect = Architect(model, 0.9, 3e-4, unrolled=order == "second", autocast=lambda: autocast_context(device, amp))
    data = SimpleNamespace(weight_stream=RandomStream(args.batch, args.size, device, False, 10),
                           arch_stream=RandomStream(args.batch, args.size, device, False, 10))
    train_epoch(model, architect, optimizer, data, 0, args.warmup, 0.025, 5.0, amp)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    train_epoch(model, architect, optimizer, data, 0, args.steps, 0.025, 5.0, amp)
    sync(device)
    step_s = (time.perf_counter() - start) / args.steps
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"s_per_step": round(step_s, 4), "s_per_epoch": round(step_s * (WEIGHT_IMAGES // args.batch), 1),
            "peak_mem_mib": round(peak / 2 ** 20, 1),
            "peak_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    parser.add_argument("--full", action="store_true", help="all 8 ops per edge (default: 2, as after ABS)")
    parser.add_argument("--variants", default="first-fp32,first-bf16,second-fp32,second-bf16")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: measure one variant in this process
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(measure(args, args.variant)))
        return
    print(f"DARTS search step on {device_name(torch.device(args.device))}: batch {args.batch}, {args.size}px, "
          f"C={args.channels}, {args.layers} cells, {'8' if args.full else '2'} ops per edge")
    results = {}
    for variant in args.variants.split(","):
        out = subprocess.run([sys.executable, *sys.argv, "--variant", variant], capture_output=True, text=True)
        if out.returncode:
            results[variant] = {"failed": out.stderr.strip().splitlines()[-1][:300]}
        else:
            results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{variant:>12}: {results[variant]}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
