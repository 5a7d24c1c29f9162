"""Does bf16 autocast change what ABS decides? The angle is computed from the supernet's weights, and the original
trains them in fp32: this trains one supernet twice from the same initial weights, on the same batches and paths,
once in fp32 and once under bf16 autocast (``--amp``), then scores one ABS round on each with the same children.

Reported: Kendall's tau-b between the two operator-score vectors (1: the same ranking), the operators each run
drops (the space's drop rule, ``dropped[0]`` fp32, ``dropped[1]`` bf16) and how many they drop in common, and the
largest score difference. ``--control_seed S`` adds the yardstick: an fp32 run from another seed (other initial
weights, batches and paths; the same children), compared with the first run the same way (``control``): a bf16
tau near the control's is a change no larger than a reseed makes.

    python bench/bf16_angle.py --control_seed 1                # a GPU: gpu space, width 0.5, 32x32 CIFAR-10
    python bench/bf16_angle.py --device cpu --steps 4 --width 0.1 --sample_num 5     # the plumbing, on a CPU

On a CPU the bf16 run uses CPU autocast (the trainer's own ``--amp`` acts on CUDA only), so the comparison is of
the same arithmetic as on a GPU. On a GPU the fp32 runs use torch's defaults (cuDNN convolutions may use TF32).
``bench/gpu_check.py`` runs it as a section, through :class:`AngleComparison` and :func:`compare`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import dataclass

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

PRECISIONS = ("fp32", "bf16")


@dataclass
class Run:
    """One trained supernet's ABS round: each operator's score, the operators the round drops, seconds taken."""

    precision: str
    seed: int
    scores: dict
    dropped: list
    seconds: float


class AngleComparison:
    """One setting (space, size, data, schedule), trained and scored once per :meth:`run`: every run scores the same
    children (drawn with ``seed``), so runs differ only by their precision and their training seed."""

    def __init__(self, space_name: str = "gpu", width_mult: float = 0.5, stem_stride: int = 1, batch: int = 128,
                 steps: int = 600, lr: float = 0.1, sample_num: int = 100, seed: int = 0, device: str = "cuda",
                 dataset: str = "embedded", data_dir: str = "") -> None:
        self.device = torch.device(device)
        self.data = build_data(DataConfig(dataset=dataset, data_dir=data_dir, workers=0), self.device, held_out=True)
        self.ref_space = get_space(space_name)
        self.space = self.ref_space.scaled(width_mult, self.data.input_size, self.data.num_classes, stem_stride)
        self.ops = self.ref_space.initial_operations()
        self.steps, self.batch, self.lr, self.sample_num, self.seed = steps, batch, lr, sample_num, seed
        self.setting = {"space": space_name, "width_mult": width_mult, "input_size": self.data.input_size,
                        "batch": batch, "steps": steps, "sample_num": sample_num, "device": str(self.device)}

    def train(self, precision: str, seed: int) -> tuple[torch.nn.Module, dict]:
        """(trained supernet, its initial weights W0) after ``steps`` uniform single-path steps."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        bf16 = precision == "bf16"
        torch.manual_seed(seed)
        model = self.space.supernet()
        init_weights(model, self.space.shrink.init)
        base = snapshot(model)
        cfg = SupernetTrainConfig(batch_size=self.batch, lr=self.lr, seed=seed, device=str(self.device), amp=bf16,
                                  channels_last=self.device.type == "cuda", checkpoint_minutes=0)
        trainer = SupernetTrainer(model, self.space.train_sampler(self.ops, seed),
                                  self.data.train_stream(self.batch, seed), cfg, self.steps, self.device)
        cpu_bf16 = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 and self.device.type == "cpu" else None
        with cpu_bf16 or contextlib.nullcontext():
            trainer.train(0, self.steps)
        return trainer.model, base

    def run(self, precision: str, seed: int | None = None) -> Run:
        """Train in ``precision`` from ``seed`` (default: the setting's), then score one ABS round."""
        seed = self.seed if seed is None else seed
        t0 = time.perf_counter()
        model, base = self.train(precision, seed)
        shrink = self.ref_space.shrink
        flops = reference_table(self.ref_space.name) if shrink.max_flops is not None else None
        sampler = CandidateSampler(self.ref_space, self.ops, np.random.default_rng([self.seed, 1]), flops=flops,
                                   max_flops=shrink.max_flops or float("inf"))
        scores, _ = score_operators(self.ops, sampler, ArchAngles(model, base, self.space).angles, self.sample_num)
        dropped = (drop_global(self.ops, scores, shrink.drops_per_round) if shrink.drop_rule == "global"
                   else drop_per_layer(self.ops, scores))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return Run(precision, seed, scores, dropped, time.perf_counter() - t0)


def compare(first: Run, other: Run) -> dict:
    """Kendall's tau-b between the two runs' operator scores, their largest score difference and how many of the
    operators each drops they drop in common."""
    keys = sorted(first.scores)
    a, b = (np.array([run.scores[k] for k in keys]) for run in (first, other))
    return {"tau": kendall_tau(a, b), "max_abs_score_diff": float(np.abs(a - b).max()),
            "dropped_in_common": len(set(first.dropped) & set(other.dropped))}


def measure(space_name: str = "gpu", width_mult: float = 0.5, stem_stride: int = 1, batch: int = 128,
            steps: int = 600, lr: float = 0.1, sample_num: int = 100, seed: int = 0, device: str = "cuda",
            dataset: str = "embedded", data_dir: str = "", precisions: tuple[str, str] = PRECISIONS,
            control_seed: int | None = None) -> dict:
    """Train in each of ``precisions`` ("fp32" or "bf16"), score one ABS round on each (same children); see the
    module docstring. ``("fp32", "fp32")`` is the check of the method: identical runs, tau 1."""
    bench = AngleComparison(space_name, width_mult, stem_stride, batch, steps, lr, sample_num, seed, device, dataset,
                            data_dir)
    runs = [bench.run(p) for p in precisions]
    result = {**bench.setting, "precisions": list(precisions), "operators": len(runs[0].scores),
              **compare(runs[0], runs[1]), "dropped": [[list(o) for o in run.dropped] for run in runs],
              "drops_per_run": len(runs[0].dropped)}
    if control_seed is not None:
        result["control"] = {"seed": control_seed, **compare(runs[0], bench.run("fp32", control_seed))}
    return result


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
    parser.add_argument("--control_seed", type=int, default=None,
                        help="also train fp32 from this seed: how far a reseed alone moves the ranking")
    args = parser.parse_args()
    result = measure(args.space, args.width, args.stem_stride, args.batch, args.steps, sample_num=args.sample_num,
                     device=args.device, dataset=args.dataset, data_dir=args.data_dir, control_seed=args.control_seed)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
