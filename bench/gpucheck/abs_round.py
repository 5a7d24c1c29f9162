"""Section 3, one ABS round at paper size (angles of ~17,900 children of the GPU space) against the original's
method (a float32 concatenated weight vector per child), timed on a sample of children and extrapolated."""
from __future__ import annotations

import time

import numpy as np
import torch
from common import direct_angles, sync

from .check import Check


def abs_round(check: Check, sec: dict) -> None:
    from anglenas.abs.angle import ArchAngles, snapshot
    from anglenas.abs.candidates import CandidateSampler
    from anglenas.abs.scoring import score_operators
    from anglenas.spaces import get_space, reference_table

    width, sample_num, direct_n = (0.25, 5, 3) if check.tiny else (1.0, 1000, 100)
    space = get_space("gpu").scaled(width) if width != 1.0 else get_space("gpu")
    torch.manual_seed(0)
    model = space.supernet().to(check.device)
    base = snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ops = space.initial_operations()
    operators = sum(len(site) for site in ops if len(site) > 1)
    sec["setting"] = (f"GPU space width {width} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M supernet "
                      f"params), {operators} operators x {sample_num} children, FLOPs <= 600M; weights W = W0 + "
                      f"0.01 N(0, 1)")
    figures = sec["figures"]
    timings: dict[str, float] = {}

    def angles(archs: np.ndarray) -> torch.Tensor:
        sync(check.device)
        t0 = time.perf_counter()
        engine = ArchAngles(model, base, space)
        sync(check.device)
        t1 = time.perf_counter()
        theta = engine.angles(archs)
        sync(check.device)
        timings["block statistics s"], timings["angles of all children s"] = t1 - t0, time.perf_counter() - t1
        return theta

    sampler = CandidateSampler(space, ops, np.random.default_rng(0), flops=reference_table("gpu"), max_flops=600e6)
    t0 = time.perf_counter()
    _, children = score_operators(ops, sampler, angles, sample_num)
    total = time.perf_counter() - t0
    figures["children scored"] = len(children)
    figures.update({k: round(v, 4) for k, v in timings.items()})
    figures["candidate sampling s"] = round(total - sum(timings.values()), 3)
    figures["whole round s"] = round(total, 3)
    check.write()
    sample = children[:direct_n]
    sync(check.device)
    t0 = time.perf_counter()
    direct = direct_angles(model, base, sample)
    sync(check.device)
    per_child = (time.perf_counter() - t0) / len(sample)
    figures["original's method ms per child"] = round(per_child * 1e3, 2)
    figures[f"original's method s per round (extrapolated from {len(sample)} children)"] = \
        round(per_child * len(children), 1)
    figures["speed-up of the whole round"] = round(per_child * len(children) / total, 1)
    exact = ArchAngles(model, base, space).angles(sample).cpu()
    figures["max |float32 direct - float64 block| rad"] = f"{(direct.double().cpu() - exact).abs().max().item():.1e}"
