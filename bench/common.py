"""What the benchmark scripts share: random input streams, device sync, the report of a set of variants.

A bench script puts the repository root and ``bench/`` on ``sys.path`` (it runs as ``python bench/NAME.py``).
"""
from __future__ import annotations

import argparse
from typing import Callable, Iterator

import torch


class RandomStream:
    """A fixed random batch served forever, in the ``BatchStream`` interface of the trainers."""

    steps_per_epoch = 10 ** 9

    def __init__(self, batch: int, size: int, device: torch.device, channels_last: bool,
                 num_classes: int = 1000) -> None:
        self.x = torch.randn(batch, 3, size, size, device=device)
        if channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, num_classes, (batch,), device=device)
        self.per_rank_batch = batch

    def batches(self, start: int, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(n):
            yield self.x, self.y


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (timings of CUDA work need it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU with its thread count."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def report_variants(variants: list[str], measure: Callable[[str], tuple[float, float]]) -> None:
    """Measure each variant (-> img/s, compile seconds) and print it with its speed-up over the first."""
    base = None
    for variant in variants:
        rate, compile_s = measure(variant)
        base = base or rate
        extra = f"  (compile {compile_s:.0f}s)" if compile_s else ""
        print(f"{variant:>16}: {rate:9.1f} img/s  x{rate / base:.2f} vs {variants[0]}{extra}")


def throughput_parser(doc: str, batch: int, steps: int, warmup: int, variants: str) -> argparse.ArgumentParser:
    """The flags of an img/s benchmark: device, batch, input size, width, timed and warm-up steps, variants."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--variants", default=variants, help="comma-separated; the first is the baseline")
    return parser
