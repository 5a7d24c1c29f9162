"""Candidate evaluation: supernet weights -> exact BN recalibration for the candidate -> top-1 on search-val.

:class:`EvalSettings` is everything that fixes a candidate's score besides the weights; it travels with every
request so that in-process workers and remote test servers compute the same number. :class:`CandidateEvaluator`
is one process's machinery (data, model, cached BN and val batches). :class:`InProcessEvaluator` and
:class:`LocalPoolEvaluator` implement the search's ``Evaluator`` protocol in this process or in N local worker
processes; :mod:`anglenas.searchers.spos.mq` implements it over RabbitMQ.
"""
from __future__ import annotations

import dataclasses
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from anglenas.checkpoint import load_checkpoint
from anglenas.data import DataConfig, build_data
from anglenas.errors import UserError
from anglenas.runtime import available_cores
from anglenas.searchers.spos.bn import recalibrate_bn
from anglenas.searchers.spos.evolution import Arch
from anglenas.searchers.spos.messages import weights_fingerprint
from anglenas.spaces import get_space
from anglenas.train.supernet import autocast_context, evaluate


@dataclass(frozen=True)
class EvalSettings:
    """What fixes a candidate's score besides the weights: model shape, data split, BN set, val set."""

    space: str
    width_mult: float
    stem_stride: int | None
    depth: int | None
    input_size: int | None
    dataset: str
    resolution: int | None
    train_limit: int | None
    search_val_size: int | None
    split_seed: int
    bn_images: int
    bn_batch_size: int
    bn_seed: int
    val_images: int | None
    eval_batch_size: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EvalSettings":
        """Build from a message's ``settings``; raises ValueError on missing, unknown or ill-typed keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        if set(d) != names:
            raise ValueError(f"settings keys differ: missing {sorted(names - set(d))}, "
                             f"unknown {sorted(set(d) - names)}")
        for key in ("split_seed", "bn_images", "bn_batch_size", "bn_seed", "eval_batch_size"):
            if not isinstance(d[key], int) or isinstance(d[key], bool):
                raise ValueError(f"settings.{key} must be an integer")
        for key in ("stem_stride", "depth", "input_size", "resolution", "train_limit", "search_val_size",
                    "val_images"):
            if d[key] is not None and (not isinstance(d[key], int) or isinstance(d[key], bool)):
                raise ValueError(f"settings.{key} must be an integer or null")
        if not isinstance(d["width_mult"], (int, float)) or not isinstance(d["space"], str) \
                or not isinstance(d["dataset"], str):
            raise ValueError("settings.width_mult must be a number, space and dataset strings")
        return cls(**d)

    def check(self) -> None:
        if self.bn_batch_size < 1 or self.bn_images < self.bn_batch_size or self.bn_images % self.bn_batch_size:
            raise UserError(f"--bn_images {self.bn_images} must be a positive multiple of --bn_batch_size "
                            f"{self.bn_batch_size}: the exact BN average needs equally sized batches")


class CandidateEvaluator:
    """Evaluates candidates of one :class:`EvalSettings` on ``device``; ``data`` gives the dataset folders."""

    def __init__(self, settings: EvalSettings, data: DataConfig, device: torch.device | str,
                 amp: bool | None = None) -> None:
        settings.check()
        self.settings, self.device = settings, torch.device(device)
        self.amp = amp if amp is not None else self.device.type == "cuda"
        data_cfg = dataclasses.replace(data, dataset=settings.dataset, search_val_size=settings.search_val_size,
                                       split_seed=settings.split_seed, resolution=settings.resolution,
                                       train_limit=settings.train_limit)
        self.data = build_data(data_cfg, self.device, held_out=True)
        space = get_space(settings.space).scaled(settings.width_mult, settings.input_size or self.data.input_size,
                                                 self.data.num_classes, settings.stem_stride, settings.depth)
        self.model = space.supernet().to(self.device).eval()
        self.fingerprint: str | None = None
        n_bn = settings.bn_images // settings.bn_batch_size
        stream = self.data.train_stream(settings.bn_batch_size, settings.bn_seed)
        self.bn_batches = list(stream.batches(0, n_bn))  # the same fixed images for every candidate
        # in-memory datasets: cache the val batches too; ImageNet's 50,000 images are streamed per candidate
        self._val_cache = None if self.data.folder is not None else list(self._val_stream())

    def _val_stream(self):
        return self.data.val_batches(self.settings.eval_batch_size, limit=self.settings.val_images)

    def load(self, path: str | Path, fingerprint: str | None = None) -> str:
        """Load supernet weights unless those with this fingerprint are loaded; returns the file's fingerprint."""
        if fingerprint is not None and fingerprint == self.fingerprint:
            return fingerprint
        path = Path(path)
        if not path.is_file():
            raise UserError(f"supernet weights {path} do not exist (test servers need the search's --save folder "
                            f"on a shared filesystem at the same path)")
        found = weights_fingerprint(path)
        if found != self.fingerprint:
            state = load_checkpoint(path, map_location=self.device)
            self.model.load_state_dict(state["model"] if "model" in state else state)
            self.fingerprint = found
        return found

    def __call__(self, arch: Sequence[int]) -> float:
        """Top-1 (%) of ``arch`` on search-val after recalibrating BN for it."""
        if self.fingerprint is None:
            raise RuntimeError("load() the supernet weights before evaluating")
        arch = [int(a) for a in arch]
        with autocast_context(self.device, self.amp):
            recalibrate_bn(self.model, arch, self.bn_batches)
        batches = self._val_cache if self._val_cache is not None else self._val_stream()
        return evaluate(lambda x: self.model(x, arch), batches, self.device, self.amp)["top1"]


class InProcessEvaluator:
    """The search's ``Evaluator`` running candidates one by one in this process."""

    def __init__(self, evaluator: CandidateEvaluator, weights: str | Path, progress: Callable | None = None) -> None:
        self.evaluator, self.weights, self.progress = evaluator, weights, progress
        evaluator.load(weights)

    def evaluate(self, archs: Sequence[Arch], on_result: Callable[[Arch, float], None]) -> None:
        for arch in archs:
            on_result(tuple(arch), self.evaluator(arch))
            if self.progress is not None:
                self.progress()


_worker: CandidateEvaluator | None = None


def _worker_init(settings: EvalSettings, data: DataConfig, device: str, weights: str, threads: int) -> None:
    global _worker
    torch.set_num_threads(threads)
    _worker = CandidateEvaluator(settings, data, device)
    _worker.load(weights)


def _worker_eval(arch: Arch) -> tuple[Arch, float]:
    assert _worker is not None
    return arch, _worker(arch)


class LocalPoolEvaluator:
    """The search's ``Evaluator`` spread over ``workers`` local processes (spawned; one model each).

    On CUDA, worker ``i`` uses GPU ``i % device_count``; each worker runs ``threads`` CPU threads (0: its share of
    the cores this process may use).
    """

    def __init__(self, settings: EvalSettings, data: DataConfig, device: torch.device, weights: str | Path,
                 workers: int, threads: int = 0, progress: Callable | None = None) -> None:
        self.progress = progress
        ctx = mp.get_context("spawn")
        self.pools = []
        gpus = torch.cuda.device_count() if device.type == "cuda" else 0
        threads = threads or max(1, available_cores() // workers)
        for i in range(workers):  # one single-process pool per worker, so each can sit on its own device
            dev = f"cuda:{i % gpus}" if gpus else str(device)
            self.pools.append(ctx.Pool(1, _worker_init, (settings, data, dev, str(weights), threads)))

    def evaluate(self, archs: Sequence[Arch], on_result: Callable[[Arch, float], None]) -> None:
        pending = [self.pools[i % len(self.pools)].apply_async(_worker_eval, (tuple(a),))
                   for i, a in enumerate(archs)]
        while pending:
            ready = [p for p in pending if p.ready()]
            for p in ready:
                arch, top1 = p.get()
                on_result(arch, top1)
                if self.progress is not None:
                    self.progress()
                pending.remove(p)
            if not ready:
                time.sleep(0.02)

    def close(self) -> None:
        for pool in self.pools:
            pool.terminate()
            pool.join()
