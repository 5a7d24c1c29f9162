"""Section 5, bf16 vs fp32 angle: does bf16 autocast change what ABS decides? The same supernet trained in fp32 and
under bf16 autocast from the same weights, batches and paths, one ABS round on each with the same children
(``bench/bf16_angle.py``); Kendall tau of the two operator-score vectors and the operators dropped in common, beside
the same figures for an fp32 run from another seed (how far a reseed alone moves them)."""
from __future__ import annotations

import torch

from .check import Check

GPU = dict(space_name="gpu", width_mult=0.5, stem_stride=1, batch=128, steps=600, sample_num=100)
"""On a GPU: ``bench/bf16_angle.py``'s defaults: three runs of 600 steps and ~14,000 children each (estimated at
under a minute on an H100; not yet measured)."""
TINY = dict(space_name="gpu", width_mult=0.1, stem_stride=2, batch=16, steps=3, sample_num=3)
RUNS = (("fp32", "fp32", 0), ("bf16", "bf16", 0), ("fp32, seed 1 (control)", "fp32", 1))
"""(row, precision, training seed): the first is the reference of the others."""


def bf16_angle(check: Check, sec: dict) -> None:
    from bf16_angle import AngleComparison, compare

    size = TINY if check.tiny else GPU
    bench = AngleComparison(**size, device=str(check.device))
    autocast = "CUDA autocast (the trainer's --amp)" if check.device.type == "cuda" else "CPU autocast"
    tf32 = (f"; fp32 with torch's defaults: cuDNN TF32 {torch.backends.cudnn.allow_tf32}, matmul TF32 "
            f"{torch.backends.cuda.matmul.allow_tf32}" if check.device.type == "cuda" else "")
    sec["setting"] = (f"{size['space_name']} space, width {size['width_mult']}, {bench.setting['input_size']}x"
                      f"{bench.setting['input_size']}, stem stride {size['stem_stride']}, batch {size['batch']}, "
                      f"{size['steps']} uniform single-path steps on the embedded CIFAR-10 from the seed's initial "
                      f"weights, then one ABS round with the same {size['sample_num']} children per operator; "
                      f"bf16: {autocast}{tf32}")
    table = sec["tables"].setdefault("runs (each compared with the first)", {})
    first = None
    for row, precision, seed in RUNS:
        run = bench.run(precision, seed)
        dropped = " ".join(f"{layer}:{op}" for layer, op in run.dropped)
        table[row] = {"seconds": round(run.seconds, 1), "dropped (layer:op)": dropped}
        if first is None:
            first = run
            sec["figures"].update({"operators scored": len(run.scores), "drops per round": len(run.dropped)})
        else:
            diff = compare(first, run)
            table[row].update({"tau": round(diff["tau"], 4), "dropped in common": diff["dropped_in_common"],
                               "max |score diff|": f"{diff['max_abs_score_diff']:.2e}"})
        check.write()
