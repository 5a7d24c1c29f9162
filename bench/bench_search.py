"""Search benchmarks: the cost of one exact BN recalibration, candidates/s in-process and with 1, 2, 4 RabbitMQ test
servers, and how few BN images keep the candidates' ranking (Kendall tau against a large BN set).

    python bench/bench_search.py throughput                      # small size on the CPU (embedded data)
    python bench/bench_search.py throughput --dataset imagenet --train_dir /data/train --device cuda \\
        --width_mult 1 --stem_stride 2 --bn_images 10240 --bn_batch_size 256 --val_images 50000
    python bench/bench_search.py bn-ranking --weights RUN/supernet.pt --operations_path RUN/../operations.json \\
        --dataset cifar10-jpg --data_dir cifar10-jpg.tar.gz

``throughput`` needs RabbitMQ on localhost (guest/guest) for the server figures; it uses queues of its own and
deletes them. Several servers may share one GPU (``--device cuda``) or take one each (``--gpus_per_server``).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from anglenas.checkpoint import save_checkpoint
from anglenas.data import DataConfig
from anglenas.log import RunLogger
from anglenas.operations import Operations, load_operations
from anglenas.searchers.spos.bn import recalibrate_bn
from anglenas.searchers.spos.evaluate import CandidateEvaluator, EvalSettings
from anglenas.searchers.spos.messages import weights_fingerprint
from anglenas.searchers.spos.mq import BrokerConfig, RabbitEvaluator, resolve_broker
from anglenas.spaces import get_space
from anglenas.spaces.mobilenet.supernet import MobileSuperNet

ROOT = Path(__file__).resolve().parents[1]


def _settings(a, bn_images=None) -> EvalSettings:
    return EvalSettings("gpu", a.width_mult, a.stem_stride, None, None, a.dataset, None, None, a.search_val_size, 0,
                        bn_images or a.bn_images, a.bn_batch_size, 0, a.val_images, a.eval_batch_size)


def _data(a) -> DataConfig:
    return DataConfig(dataset=a.dataset, train_dir=a.train_dir, data_dir=a.data_dir, workers=a.workers)


def _archs(ops: list[list[int]], n: int, seed: int = 0) -> list[tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    return [tuple(int(layer[rng.integers(len(layer))]) for layer in ops) for _ in range(n)]


def throughput(a) -> None:
    device = torch.device(a.device)
    settings = _settings(a)
    ev = CandidateEvaluator(settings, _data(a), device)
    tmp = Path(tempfile.mkdtemp(prefix="bench_search_"))
    weights = tmp / "supernet.pt"
    torch.manual_seed(0)
    save_checkpoint({"model": MobileSuperNet(ev.model.space).state_dict()}, weights)
    ev.load(weights)
    archs = _archs(Operations.full(get_space("gpu")).ops, a.candidates)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    ev(archs[0])  # warm-up
    times = []
    for arch in archs[1:4]:
        sync()
        t0 = time.perf_counter()
        recalibrate_bn(ev.model, list(arch), ev.bn_batches)
        sync()
        times.append(time.perf_counter() - t0)
    print(f"BN recalibration ({a.bn_images} images, batch {a.bn_batch_size}, {device}): "
          f"{1000 * np.median(times):.1f} ms ({1000 * np.median(times) / a.bn_images:.3f} ms/image)")
    t0 = time.perf_counter()
    for arch in archs:
        ev(arch)
    sync()
    per = (time.perf_counter() - t0) / len(archs)
    print(f"in-process: {1 / per:.2f} candidates/s ({per:.3f} s/candidate: BN {a.bn_images} + val "
          f"{ev.data.num_val if a.val_images is None else a.val_images} images)")
    del ev
    for n in a.servers:
        rate = _servers_rate(a, n, weights, settings, archs)
        print(f"{n} test server(s): {rate:.2f} candidates/s" if rate else f"{n} test server(s): no broker")


def _servers_rate(a, n: int, weights: Path, settings: EvalSettings, archs) -> float | None:
    tag = uuid.uuid4().hex[:8]
    broker = resolve_broker(BrokerConfig(request_queue=f"bench_req_{tag}", result_queue=f"bench_res_{tag}",
                                         dead_letter_queue=f"bench_dlq_{tag}"))
    flags = [f"--{f.name}={getattr(broker, f.name)}" for f in dataclasses.fields(BrokerConfig)]
    logs, procs = [], []
    gpus = torch.cuda.device_count() if a.device.startswith("cuda") else 0
    for i in range(n):
        device = f"cuda:{i % gpus}" if gpus and a.gpus_per_server else a.device
        log = open(weights.parent / f"server{n}_{i}.log", "w")
        procs.append(subprocess.Popen(
            [sys.executable, str(ROOT / "searching" / "test_server.py"), "--dataset", a.dataset, "--data_dir",
             a.data_dir, "--train_dir", a.train_dir, "--workers", str(a.workers), "--device", device,
             "--threads", str(a.server_threads), *flags], stdout=log, stderr=subprocess.STDOUT))
        logs.append(log)
    try:
        evaluator = RabbitEvaluator(broker, str(weights), weights_fingerprint(weights), settings.to_dict(),
                                    RunLogger(None, enabled=False))
    except Exception:  # noqa: BLE001 - a benchmark without a broker just says so
        for p in procs:
            p.kill()
        return None
    stamps: list[float] = []
    try:
        evaluator.evaluate(archs[:n], lambda *_: None)  # every server has loaded data and weights
        evaluator.evaluate(archs[n:n + a.candidates], lambda *_: stamps.append(time.perf_counter()))
    finally:
        evaluator.close()
        for p in procs:
            p.kill()
            p.wait()
        for log in logs:
            log.close()
        import pika

        conn = pika.BlockingConnection(pika.ConnectionParameters(broker.mq_host, broker.mq_port))
        ch = conn.channel()
        for q in (broker.request_queue, broker.result_queue, broker.dead_letter_queue):
            ch.queue_delete(q)
        conn.close()
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None


def bn_ranking(a) -> None:
    """Kendall tau and top-k overlap of candidate rankings with k BN images against the largest set."""
    from scipy.stats import kendalltau

    device = torch.device(a.device)
    ops = load_operations(a.operations_path).ops if a.operations_path else \
        Operations.full(get_space("gpu")).ops
    archs = _archs(ops, a.candidates, seed=1)
    sizes = sorted(set(a.bn_sizes))
    ev = CandidateEvaluator(_settings(a, sizes[-1]), _data(a), device)
    ev.load(a.weights)
    all_batches = ev.bn_batches
    scores = {}
    for k in sizes:
        ev.bn_batches = all_batches[: k // a.bn_batch_size]
        t0 = time.perf_counter()
        scores[k] = np.array([ev(arch) for arch in archs])
        print(f"  {k} BN images: mean top1 {scores[k].mean():.2f}% ({time.perf_counter() - t0:.0f}s)", flush=True)
    ref = scores[sizes[-1]]
    top = set(np.argsort(-ref)[: max(1, len(archs) // 5)])
    val = ev.data.num_val if a.val_images is None else a.val_images
    print(f"ranking of {len(archs)} candidates vs {sizes[-1]} BN images (val {val} images):")
    for k in sizes[:-1]:
        tau = kendalltau(scores[k], ref).statistic
        overlap = len(top & set(np.argsort(-scores[k])[: len(top)])) / len(top)
        print(f"  k={k:6d}: Kendall tau {tau:.3f}, top-20% overlap {overlap:.2f}, "
              f"mean |d top1| {np.abs(scores[k] - ref).mean():.2f} points")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("throughput", "bn-ranking"))
    p.add_argument("--dataset", default="embedded")
    p.add_argument("--train_dir", default="")
    p.add_argument("--data_dir", default="")
    p.add_argument("--search_val_size", type=int, default=None)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--width_mult", type=float, default=0.25)
    p.add_argument("--stem_stride", type=int, default=2)
    p.add_argument("--bn_images", type=int, default=128)
    p.add_argument("--bn_batch_size", type=int, default=64)
    p.add_argument("--val_images", type=int, default=None)
    p.add_argument("--eval_batch_size", type=int, default=200)
    p.add_argument("--candidates", type=int, default=12)
    p.add_argument("--servers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--server_threads", type=int, default=1, help="CPU threads per test server")
    p.add_argument("--gpus_per_server", action="store_true", help="server i on GPU i %% count (else all share)")
    p.add_argument("--weights", default="", help="bn-ranking: trained supernet weights (SAVE/supernet.pt)")
    p.add_argument("--operations_path", default="", help="bn-ranking: the space the candidates come from")
    p.add_argument("--bn_sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 4096])
    a = p.parse_args()
    if a.server_threads:  # the in-process figures use as many threads as one server
        torch.set_num_threads(a.server_threads)
    os.environ.setdefault("ANGLENAS_MQ_HOST", "127.0.0.1")
    throughput(a) if a.what == "throughput" else bn_ranking(a)


if __name__ == "__main__":
    main()
