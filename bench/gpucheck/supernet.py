"""Section 2, supernet training img/s: the GPU space, width 1, 224x224, batch 128 and 256, a random path per step
(every op warmed up): the original's loop against ours, then each speed lever of ``bench/bench_supernet.py``."""
from __future__ import annotations

from common import report_variants

from .check import Check


def supernet(check: Check, sec: dict) -> None:
    from bench_supernet import VARIANTS, measure

    if check.tiny:
        size, width, steps, warmup, batches = 16, 0.1, 1, 0, (2, 4)
        levers = ["bf16-cl-fused", "bf16-cl-hostdata"]
    else:
        size, width, steps, warmup, batches = 224, 1.0, 25, 3, (128, 256)
        levers = [v for v in VARIANTS if v not in ("original", "bf16-cl")]
    sec["setting"] = (f"GPU space, width {width}, {size}x{size}, random data, a random path per step "
                      f"(UniformPathSampler seed 0); every op run once, then {warmup} warm-up and {steps} timed steps")
    # compilation last: it may take the rest of the section's time
    order = ([(batches[0], v) for v in ["original", "bf16-cl", *levers] if not v.endswith("compile")]
             + [(batches[1], v) for v in ("original", "bf16-cl")]
             + [(batches[0], v) for v in levers if v.endswith("compile")])
    for batch, variant in order:
        table = sec["tables"].setdefault(f"batch {batch}", {})
        result = report_variants([variant], lambda v: measure(v, batch, size, width, steps, warmup, check.device))
        result[variant].pop("ratio", None)  # measured alone: the ratio to the original is the next column
        table[variant] = result[variant]
        if "img_per_s" in result[variant] and "img_per_s" in table.get("original", {}):
            table[variant]["x original"] = round(result[variant]["img_per_s"] / table["original"]["img_per_s"], 2)
        check.write()
