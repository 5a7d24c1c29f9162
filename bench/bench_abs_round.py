"""Time to score one full ABS round in the paper-size GPU space (141 operators, 1000 children per operator,
FLOPs <= 600M), split into candidate sampling, block statistics and angles, against the direct method of the
original (one concatenated weight vector per child) timed on a sample and extrapolated.

    python bench/bench_abs_round.py [--device cuda] [--sample_num 1000] [--direct_sample 200]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import device_name, direct_angles, sync  # bench/ is on the path of a bench script

from anglenas.abs.angle import ArchAngles, snapshot
from anglenas.abs.candidates import CandidateSampler
from anglenas.abs.scoring import score_operators
from anglenas.spaces import get_space, reference_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sample_num", type=int, default=1000)
    parser.add_argument("--direct_sample", type=int, default=200, help="children timed with the direct method")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    space = get_space("gpu")
    model = space.supernet().to(device)
    base = snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ops = space.initial_operations()
    name = device_name(device)
    print(f"device: {name}; GPU space at paper size ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
          f"supernet params), {sum(len(layer) for layer in ops)} operators, {args.sample_num} children per operator")

    sampler = CandidateSampler(space, ops, np.random.default_rng(0), flops=reference_table("gpu"), max_flops=600e6)
    timings = {}

    def timed_angles(archs):
        sync(device)
        t0 = time.perf_counter()
        angles = ArchAngles(model, base, space)
        sync(device)
        t1 = time.perf_counter()
        theta = angles.angles(archs)
        sync(device)
        timings["block statistics"], timings["angles of all children"] = t1 - t0, time.perf_counter() - t1
        return theta

    t0 = time.perf_counter()
    scores, children = score_operators(ops, sampler, timed_angles, args.sample_num)
    total = time.perf_counter() - t0
    timings["candidate sampling"] = total - timings["block statistics"] - timings["angles of all children"]
    print(f"children scored: {len(children)}")
    for key, seconds in timings.items():
        print(f"  {key:>24}: {seconds:8.3f} s")
    print(f"  {'whole round':>24}: {total:8.3f} s")

    angles_seconds = timings["angles of all children"]
    sample = children[: args.direct_sample]
    sync(device)
    t0 = time.perf_counter()
    direct32 = direct_angles(model, base, sample)
    sync(device)
    per_child = (time.perf_counter() - t0) / len(sample)
    print(f"direct method (the original: a float32 vector per child): {per_child * 1e3:.2f} ms per child -> "
          f"{per_child * len(children):.1f} s for the round's angles "
          f"({per_child * len(children) / angles_seconds:.0f}x the {angles_seconds:.3f} s of the block method)")
    few = sample[:10]
    exact = direct_angles(model.double(), {k: v.double() for k, v in base.items()}, few).cpu()
    block = ArchAngles(model, base, space).angles(few).cpu()
    print(f"max |angle - exact float64 direct angle| over {len(few)} children: block method "
          f"{(block - exact).abs().max().item():.1e} rad, float32 direct method "
          f"{(direct32[: len(few)].double().cpu() - exact).abs().max().item():.1e} rad")

if __name__ == "__main__":
    main()
