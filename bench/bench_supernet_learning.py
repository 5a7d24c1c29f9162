"""How fast a single-path supernet of the GPU space learns at demo size, and what slows it: train top-1 of the
last 100 steps of uniform random paths (our SupernetTrainer, the demo's optimiser) under four path policies, on the
embedded 12,000 real CIFAR-10 images, width 0.25, 32x32, stem stride 1.

Policies:
  fixed          one architecture every step (a plain network: the speed a single path learns at)
  mix-residual   a random op at the 16 residual layers only (at width 0.25 layer 12 is 32 -> 32, so residual);
                 the 5 stride-2 / channel-changing layers fixed
  mix-all        a random op at every layer: SPOS' uniform sampling, what shrinking and searching train
  mix-all-zero   mix-all with every residual block starting as the identity (``--zero_init_residual``)

    python bench/bench_supernet_learning.py                    # 600 steps per policy, ~8 minutes on 2 cores
    python bench/bench_supernet_learning.py --steps 100 --policies fixed,mix-all
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from anglenas.data import DataConfig, build_data
from anglenas.nn.init import init_weights
from anglenas.spaces import get_space
from anglenas.train.supernet import SupernetTrainConfig, SupernetTrainer

POLICIES = ("fixed", "mix-residual", "mix-all", "mix-all-zero")


class PolicySampler:
    """A path per step: ``random_sites`` uniform over the space's ops, the other sites at op 0 (seeded by step)."""

    def __init__(self, ops: list[list[int]], random_sites: set[int], seed: int) -> None:
        self.ops, self.random_sites, self.seed = ops, random_sites, seed

    def paths(self, step: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, step])
        return [[int(rng.choice(site_ops)) if i in self.random_sites else 0 for i, site_ops in enumerate(self.ops)]]


def run(policy: str, steps: int, data, seed: int) -> tuple[float, float]:
    """(train top-1 % of the last 100 steps, seconds) of ``steps`` steps under ``policy``."""
    space = get_space("gpu").scaled(0.25, 32, 10, 1)
    torch.manual_seed(seed)
    model = space.supernet()
    init_weights(model, "he_fanout", zero_init_residual=policy == "mix-all-zero")
    ops = [list(site) for site in space.initial_operations()]
    residual = {i for i, layer in enumerate(model.layers) if layer.ops[0].use_residual}
    random_sites = {"fixed": set(), "mix-residual": residual}.get(policy, set(range(len(ops))))
    cfg = SupernetTrainConfig(batch_size=64, lr=0.1, seed=seed, device="cpu", checkpoint_minutes=0)
    stream = data.train_stream(64, seed, 0, 1, True)
    trainer = SupernetTrainer(model, PolicySampler(ops, random_sites, seed), stream, cfg, 12 * stream.steps_per_epoch,
                              torch.device("cpu"))
    correct = []
    start = time.perf_counter()
    for step, (x, y) in zip(range(steps), stream.batches(0, steps)):
        _, right, _ = trainer.step(step, x, y)
        correct.append(right.item() / len(y))
    return 100.0 * float(np.mean(correct[-100:])), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = build_data(DataConfig(dataset="embedded-12k", workers=0), "cpu", held_out=True)
    print(f"GPU space, width 0.25, 32x32, stem stride 1, batch 64, lr 0.1, {args.steps} steps, seed {args.seed}; "
          f"chance is 10%")
    print("| policy | train top-1, last 100 steps | seconds |")
    print("|---|---|---|")
    for policy in args.policies.split(","):
        if policy not in POLICIES:
            raise SystemExit(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
        top1, seconds = run(policy, args.steps, data, args.seed)
        print(f"| {policy} | {top1:.1f}% | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
