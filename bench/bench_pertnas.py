"""PertNAS search cost: time the three kinds of search network, extrapolate one member-edge and the whole search.

Times a training step and an evaluation batch of the paper's search network (the DARTS space's relaxed supernet at
C=16, 5 cells, batch 256, fp16 AMP on CUDA, channels_last) in its three shapes: one edge expanded to all 7 ops
(population phase), 2 ops per edge (fine-grained phase), 1 op per edge (topology phase). Extrapolates with the
search's step counts (docs/pertnas.md):

    python bench/bench_pertnas.py                      # paper setting on the GPU
    python bench/bench_pertnas.py --batch 32 --channels 4 --steps 3 --device cpu --threads 1   # quick CPU check
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from anglenas.data.device_cifar import PIPELINES, DeviceLoader, eval_batches
from anglenas.runtime import use_threads
from anglenas.searchers.pertnas.cell import CANDIDATES, ORIGINAL_LAYERS
from anglenas.searchers.pertnas.model import expand_site, masked_network
from anglenas.searchers.pertnas.perturb import StepSettings, accuracy, new_sgd, train_steps
from anglenas.spaces import get_space


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_network(switches, args, device: torch.device, loader: DeviceLoader, val) -> tuple[float, float]:
    """(seconds per training step, seconds per evaluation batch) of the network with ``switches``."""
    torch.manual_seed(0)
    space = get_space("darts").scaled(input_size=32, num_classes=10, stem_stride=1)
    net, _ = masked_network(space, switches, args.channels, args.layers)
    net = net.to(device, memory_format=torch.channels_last)
    settings = StepSettings(amp=args.amp)
    opt = new_sgd(net, 0.087, settings)
    train_steps(net, opt, loader.passes((0,), args.warmup), settings)
    sync(device)
    t0 = time.perf_counter()
    train_steps(net, opt, loader.passes((1,), args.steps), settings)
    sync(device)
    step = (time.perf_counter() - t0) / args.steps
    x, y = val
    batches = [(x[i:i + args.batch], y[i:i + args.batch]) for i in range(0, len(y), args.batch)]
    accuracy(net, batches[:1], args.amp)
    sync(device)
    t0 = time.perf_counter()
    accuracy(net, batches, args.amp)
    sync(device)
    return step, (time.perf_counter() - t0) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=ORIGINAL_LAYERS)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per network shape")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--train_images", type=int, default=45000, help="search-train images (epoch length)")
    parser.add_argument("--val_images", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--finetune_steps", type=int, default=50)
    parser.add_argument("--npop", type=int, default=4)
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: one per core this process may use)")
    args = parser.parse_args()
    print(f"{use_threads(args.threads)} CPU thread(s)")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    half = args.amp and device.type == "cuda"
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (max(args.batch * (args.steps + args.warmup), args.batch), 3, 32, 32),
                           dtype=torch.uint8, generator=gen).to(device)
    labels = torch.randint(0, 10, (len(images),), generator=gen).to(device)
    loader = DeviceLoader(images, labels, args.batch, 0, PIPELINES["ffcv"], half=half, channels_last=True)
    val = next(eval_batches(images[:args.val_images], labels[:args.val_images], args.val_images,
                            PIPELINES["ffcv"], half, channels_last=True))
    rng = np.random.default_rng(0)
    one = [[int(rng.choice(CANDIDATES))] for _ in range(14)]
    two = [sorted(int(o) for o in rng.choice(CANDIDATES, 2, replace=False)) for _ in range(14)]
    shapes = {"expanded": expand_site(one, 0, sorted(CANDIDATES)), "two ops": two, "one op": one}
    times = {name: time_network(sw, args, device, loader, val) for name, sw in shapes.items()}
    for name, (step, ev) in times.items():
        print(f"{name:>9}: {step * 1e3:8.1f} ms/train step, {ev * 1e3:7.1f} ms/eval batch "
              f"({args.batch / step:7.0f} img/s training)")

    spe = args.train_images // args.batch
    val_batches = math.ceil(args.val_images / args.batch)
    F = args.finetune_steps

    def phase(name: str, cands: int, extra: int) -> float:
        step, ev = times[name]
        val_pass = val_batches * ev
        return args.epochs * spe * step + cands * ((F + extra + 1) * step + val_pass) + val_pass

    member_edge = phase("expanded", len(CANDIDATES), 20)
    fine = 14 * (phase("two ops", 2, 80) + args.epochs * val_batches * times["two ops"][1])
    topology = 3 * (phase("one op", 4, 130) + args.epochs * val_batches * times["one op"][1])  # 12 edges in all
    members = math.ceil(args.npop / args.ranks)
    population = members * 14 * member_edge
    print(f"one member-edge (train {args.epochs} x {spe} steps, 7 x {F + 21} fine-tune steps, 8 val passes): "
          f"{member_edge:.0f} s")
    print(f"search with npop {args.npop} on {args.ranks} ranks: population {population / 3600:.2f} h + fine "
          f"{fine / 3600:.2f} h + topology {topology / 3600:.2f} h = {(population + fine + topology) / 3600:.2f} h "
          f"wall, {(args.ranks * population + fine + topology) / 3600:.1f} device-hours (only rank 0 goes on after "
          f"the population)")


if __name__ == "__main__":
    main()
