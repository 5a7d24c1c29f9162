"""NAS-Bench-201 throughput: the angles of all 15,625 architectures, supernet training img/s, data pipeline img/s.

    python bench/bench_nb201.py                                             # CUDA: the paper-size supernet
    python bench/bench_nb201.py --device cpu --batch 32 --resolution 16 --channels 8 --cells_per_stage 1 --steps 5

Angles: block statistics of the trained supernet against W0 (once per checkpoint), then the gather over all
cells. Training: SupernetTrainer steps with the per-cell sampler on random data. Data: on-device crop + flip +
normalise batches from uint8 images held on the device (the NB201 25k CIFAR-10 half, synthetic pixels).
"""
from __future__ import annotations

import argparse
import time

import torch
from common import RandomStream, sync  # bench/ is on the path of a bench script

from anglenas.abs.angle import ArchAngles, snapshot
from anglenas.data.normalize import CIFAR_NORMALIZE
from anglenas.data.streams import TensorStream
from anglenas.nb201.optim import update_every_parameter
from anglenas.spaces.nb201.cells import all_cells
from anglenas.spaces.nb201.space import NB201_SPACE
from anglenas.train.supernet import SupernetTrainConfig, SupernetTrainer


def timed(fn, device: torch.device, repeat: int) -> float:
    """Best wall time of ``repeat`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells_per_stage", type=int, default=5)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--images", type=int, default=25000, help="images held on the device for the data benchmark")
    args = p.parse_args()
    device = torch.device(args.device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"C={args.channels} N={args.cells_per_stage}, {args.resolution}x{args.resolution}, batch {args.batch}")

    space = NB201_SPACE.sized(args.channels, args.cells_per_stage, args.resolution, 10)
    torch.manual_seed(0)
    model = space.supernet().to(device)
    base = snapshot(model)
    with torch.no_grad():
        for w in model.parameters():
            w.add_(0.1 * torch.randn_like(w))
    cells = torch.as_tensor(all_cells(), device=device)
    table_s = timed(lambda: ArchAngles(model, base, space), device, 3)
    angles = ArchAngles(model, base, space)
    gather_s = timed(lambda: angles.angles(cells), device, 5)
    print(f"angles of all {len(cells)} architectures: {table_s + gather_s:.4f} s "
          f"(block statistics {table_s:.4f} s + gather {gather_s:.4f} s)")

    variants = ((False, False, "sampled_only"), (False, False, "original"), (True, device.type == "cuda", "original"))
    for channels_last, amp, semantics in variants:
        cfg = SupernetTrainConfig(batch_size=args.batch, lr=0.1, amp=amp, channels_last=channels_last)
        stream = RandomStream(args.batch, args.resolution, device, channels_last, num_classes=10)
        sampler = space.train_sampler(space.initial_operations(), 0)
        trainer = SupernetTrainer(space.supernet(), sampler, stream, cfg, 10 ** 6, device)
        if semantics == "original":  # every parameter stepped every step (fidelity fix 4)
            trainer.optimizer = update_every_parameter(trainer.model, cfg.lr, cfg.momentum, 5e-4)
        seconds = timed(lambda: trainer.train(0, args.steps), device, 1)
        label = ("bf16 " if amp else "fp32 ") + ("channels_last" if channels_last else "NCHW") + f", {semantics}"
        print(f"supernet training ({label}): {args.steps * args.batch / seconds:.0f} img/s")

    images = torch.randint(0, 256, (args.images, 3, args.resolution, args.resolution), dtype=torch.uint8,
                           device=device)
    labels = torch.randint(0, 10, (args.images,), device=device)
    stream = TensorStream(images, labels, args.batch, 0, CIFAR_NORMALIZE, pad=4 if args.resolution > 16 else 2)

    def pull() -> None:
        for x, _ in stream.batches(0, args.steps):
            pass
        sync(device)

    seconds = timed(pull, device, 2)
    print(f"data pipeline (on-device crop + flip + normalise): {args.steps * args.batch / seconds:.0f} img/s")


if __name__ == "__main__":
    main()
