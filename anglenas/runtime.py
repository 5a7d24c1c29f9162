"""Where a process runs: its device and its number of CPU threads."""
from __future__ import annotations

import os

import torch

from anglenas.errors import UserError


def pick_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` (GPU ``local_rank``) or ``cuda:N`` as a device; a GPU that is not there is a
    :class:`UserError`."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r} is not a device: pass cpu, cuda, cuda:N or auto") from None
    if dev.type != "cuda":
        return dev
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UserError(f"--device {device}: no CUDA GPU is visible here (torch.cuda.is_available() is False); "
                        f"pass --device cpu, or auto to use a GPU where there is one")
    dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
    if dev.index >= count:
        raise UserError(f"--device {device}: GPU {dev.index} does not exist, this machine shows {count} "
                        f"(cuda:0 to cuda:{count - 1})")
    return dev


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask: what ``taskset`` or a container grants)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads to ``threads`` (0: one per core this process may use) and return the count."""
    count = threads or available_cores()
    torch.set_num_threads(count)
    return count
