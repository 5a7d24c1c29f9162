"""Distributed helpers for ``torchrun``: process group set-up, object broadcast, gradient all-reduce."""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from anglenas.runtime import pick_device


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: str = "auto") -> tuple[DistEnv, torch.device]:
    """Read torchrun's environment and pick the device; joins the process group when ``WORLD_SIZE > 1``.

    NCCL on GPUs, gloo on CPUs. The timeout is long because rank 0 alone scores a shrinking round.
    """
    env = DistEnv(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                  int(os.environ.get("LOCAL_RANK", 0)))
    dev = pick_device(device, env.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if env.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=3),
                                device_id=dev if dev.type == "cuda" else None)
    return env, dev


def broadcast_object(obj, env: DistEnv, src: int = 0):
    """``obj`` from rank ``src`` on every rank (identity when not distributed)."""
    if not env.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def all_reduce_grads(params: list[torch.Tensor], env: DistEnv, bucket_bytes: int = 32 << 20) -> None:
    """Average the gradients of ``params`` over ranks, in flat buckets.

    Every rank trains the same path, so every rank holds gradients for the same parameters in the same order.
    """
    if not env.enabled:
        return
    bucket: list[torch.Tensor] = []
    size = 0
    for p in params:
        nbytes = p.grad.numel() * p.grad.element_size()
        if bucket and size + nbytes > bucket_bytes:
            _average(bucket, env)
            bucket, size = [], 0
        bucket.append(p.grad)
        size += nbytes
    if bucket:
        _average(bucket, env)


def _average(grads: list[torch.Tensor], env: DistEnv) -> None:
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= env.world
    for dst, src in zip(grads, _unflatten_dense_tensors(flat, grads)):
        dst.copy_(src)
