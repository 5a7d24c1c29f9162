"""What the benchmark scripts share: random input streams, device sync, the report of a set of variants.

A bench script runs as ``python bench/NAME.py`` (``bench/`` is then on ``sys.path``; the package is installed).
"""
from __future__ import annotations

import argparse
import time
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


def images_per_second(batches: Iterator, steps: int, warmup: int, device: torch.device) -> float:
    """Images a second that ``batches`` (tensors or ``(images, labels)``) deliver over ``steps`` batches, after
    ``warmup`` batches of start-up (worker processes, first decodes)."""
    for _ in range(warmup):
        next(batches)
    sync(device)
    t0, n = time.perf_counter(), 0
    for _ in range(steps):
        batch = next(batches)
        n += len(batch[0] if isinstance(batch, tuple) else batch)
    sync(device)
    return n / (time.perf_counter() - t0)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU with its thread count."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def report_variants(variants: list[str], measure: Callable[[str], tuple[float, float]]) -> dict[str, dict]:
    """Measure each variant (-> img/s, seconds spent compiling or capturing) and print it with its speed-up over the
    first; a variant that raises is printed and recorded as failed. Returns variant -> figures or ``failed``."""
    base = None
    results: dict[str, dict] = {}
    for variant in variants:
        try:
            rate, compile_s = measure(variant)
        except Exception as exc:  # noqa: BLE001  (one failing variant must not hide the others)
            results[variant] = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
            print(f"{variant:>16}: failed: {results[variant]['failed']}")
            continue
        base = base or rate
        results[variant] = {"img_per_s": round(rate, 1), "ratio": round(rate / base, 3),
                            "prepare_s": round(compile_s, 1)}
        extra = f"  (compile/capture {compile_s:.0f}s)" if compile_s else ""
        print(f"{variant:>16}: {rate:9.1f} img/s  x{rate / base:.2f} vs {variants[0]}{extra}")
    return results


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


def direct_angles(model: torch.nn.Module, base: dict[str, torch.Tensor], archs) -> torch.Tensor:
    """The original's angle method: concatenate V(W0, a) and V(W, a) of each child of a chain space (fixed weights,
    then each layer's op weights), then arccos of their cosine in the weights' dtype (float32 in the original)."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = []
    for arch in archs:
        weights = model.fixed_weights() + [w for site, op in enumerate(arch)
                                           for w in model.choice_weights(site, int(op))]
        v0 = torch.cat([base[names[id(w)]].reshape(-1) for w in weights])
        v1 = torch.cat([w.detach().reshape(-1) for w in weights])
        out.append(torch.arccos(torch.nn.functional.cosine_similarity(v0, v1, dim=0).clamp(-1, 1)))
    return torch.stack(out)


def final_train_rate(variant: str, arch: str, batch: int, size: int, width: float, steps: int, warmup: int,
                     device: torch.device) -> tuple[float, float]:
    """(img/s, compile seconds) of training the published ``arch`` from scratch on random data.

    ``plain-fp32``: a plain fp32 NCHW eager loop (zero_grad, forward, label-smoothed CE, backward,
    ``clip_grad_norm_``, SGD). ``fp32-cl`` / ``bf16-cl`` / ``bf16-cl-compile``: our step
    (:func:`anglenas.stages.train.train_step`) with channels_last, bf16 autocast, ``torch.compile``.
    """
    import time

    from torch import nn

    from anglenas.archs import published
    from anglenas.spaces import get_space
    from anglenas.stages.train import train_step
    from anglenas.train.optim import sgd

    torch.manual_seed(0)
    space_name, arch_ops = published()[arch]
    space = get_space(space_name).scaled(width, size)
    channels_last = "-cl" in variant
    amp = variant.startswith("bf16")
    model = space.network(arch_ops).to(device, memory_format=torch.channels_last if channels_last
                                       else torch.preserve_format)
    optimizer = sgd(model, 0.5, 0.9, 4e-5)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, space.num_classes, (batch,), device=device)
    params = list(model.parameters())
    net = torch.compile(model) if variant.endswith("compile") else model
    compile_seconds = 0.0

    def run(n: int) -> None:
        for _ in range(n):
            if variant == "plain-fp32":
                optimizer.zero_grad()
                criterion(model(x), y).backward()
                nn.utils.clip_grad_norm_(params, 5.0)
                optimizer.step()
            else:
                train_step(net, optimizer, criterion, x, y, params, 5.0, amp)

    if variant.endswith("compile"):
        t0 = time.perf_counter()
        run(1)
        sync(device)
        compile_seconds = time.perf_counter() - t0
    run(warmup)
    sync(device)
    t0 = time.perf_counter()
    run(steps)
    sync(device)
    return steps * batch / (time.perf_counter() - t0), compile_seconds
