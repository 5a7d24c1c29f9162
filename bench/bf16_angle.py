"""Does bf16 autocast change what ABS decides? The angle is computed from the supernet's weights, and the original
trains them in fp32: this trains one supernet twice from the same initial weights, on the same batches and paths,
once in fp32 and once under bf16 autocast (``--amp``), then scores one ABS round on each with the same children.

Reported: Kendall's tau-b between the two operator-score vectors (1: the same ranking), the operators each run
drops (the space's drop rule, ``dropped[0]`` fp32, ``dropped[1]`` bf16) and how many they drop in common, and the
largest score difference.

    python bench/bf16_angle.py                                 # a GPU: gpu space, width 0.5, 32x32 CIFAR-10
    python bench/bf16_angle.py --device cpu --steps 4 --width 0.1 --sample_num 5     # the plumbing, on a CPU

On a CPU the bf16 run uses CPU autocast (the trainer's own ``--amp`` acts on CUDA only), so the comparison is of
the same arithmetic as on a GPU. :func:`measure` is what ``bench/gpu_check.py`` calls.
"""
from __future__ import annotations

import argparse
import contextlib
import json

import numpy as np
import torch

from anglenas.abs.angle import ArchAngles, snapshot
from anglenas.abs.candidates import CandidateSampler
from anglenas.abs.scoring import drop_global, drop_per_layer, score_operators
from anglenas.data import DataConfig, build_data
from anglenas.nb201.metrics import kendall_tau
from anglenas.nn.init import init_weights
from anglenas.spaces import get_space, reference_table
from anglenas.train.supernet import SupernetTrainConfig, SupernetTrainer


def train_supernet(space, ops, stream, steps: int, batch: int, lr: float, seed: int, device: torch.device,
                   bf16: bool):
    """(trained supernet, its initial weights W0) after ``steps`` uniform single-path steps, fp32 or bf16."""
    torch.manual_seed(seed)
    model = space.supernet()
    init_weights(model, space.shrink.init)
    base = snapshot(model)
    cfg = SupernetTrainConfig(batch_size=batch, lr=lr, seed=seed, device=str(device), amp=bf16,
                              channels_last=device.type == "cuda", checkpoint_minutes=0)
    trainer = SupernetTrainer(model, space.train_sampler(ops, seed), stream, cfg, steps, device)
    cpu_bf16 = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 and device.type == "cpu" else None
    with cpu_bf16 or contextlib.nullcontext():
        trainer.train(0, steps)
    return trainer.model, base


def measure(space_name: str = "gpu", width_mult: float = 0.5, stem_stride: int = 1, batch: int = 128,
            steps: int = 600, lr: float = 0.1, sample_num: int = 100, seed: int = 0, device: str = "cuda",
            dataset: str = "embedded", data_dir: str = "", precisions: tuple[str, str] = ("fp32", "bf16")) -> dict:
    """Train in each of ``precisions`` ("fp32" or "bf16"), score one ABS round on each (same children); see the
    module docstring. ``("fp32", "fp32")`` is the control: identical runs, tau 1."""
    dev = torch.device(device)
    data = build_data(DataConfig(dataset=dataset, data_dir=data_dir, workers=0), dev, held_out=True)
    ref_space = get_space(space_name)
    space = ref_space.scaled(width_mult, data.input_size, data.num_classes, stem_stride)
    ops = ref_space.initial_operations()
    shrink = ref_space.shrink
    flops = reference_table(space_name) if shrink.max_flops is not None else None
    scores, drops = [], []
    for precision in precisions:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        stream = data.train_stream(batch, seed)
        model, base = train_supernet(space, ops, stream, steps, batch, lr, seed, dev, precision == "bf16")
        sampler = CandidateSampler(ref_space, ops, np.random.default_rng([seed, 1]), flops=flops,
                                   max_flops=shrink.max_flops or float("inf"))
        run_scores, _ = score_operators(ops, sampler, ArchAngles(model, base, space).angles, sample_num)
        scores.append(run_scores)
        drops.append(drop_global(ops, run_scores, shrink.drops_per_round) if shrink.drop_rule == "global"
                     else drop_per_layer(ops, run_scores))
    keys = sorted(scores[0])
    a, b = (np.array([run[k] for k in keys]) for run in scores)
    return {"space": space_name, "width_mult": width_mult, "input_size": data.input_size, "batch": batch,
            "steps": steps, "sample_num": sample_num, "device": str(dev), "precisions": list(precisions),
            "operators": len(keys), "tau": kendall_tau(a, b), "max_abs_score_diff": float(np.abs(a - b).max()),
            "dropped": [[list(o) for o in run] for run in drops], "drops_per_run": len(drops[0]),
            "dropped_in_common": len(set(drops[0]) & set(drops[1]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--space", default="gpu")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--stem_stride", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--sample_num", type=int, default=100)
    parser.add_argument("--dataset", default="embedded")
    parser.add_argument("--data_dir", default="")
    args = parser.parse_args()
    result = measure(args.space, args.width, args.stem_stride, args.batch, args.steps, sample_num=args.sample_num,
                     device=args.device, dataset=args.dataset, data_dir=args.data_dir)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
