"""Stopping a long run without losing work: Ctrl-C (SIGINT) and SIGTERM set a flag that the training loops read
between whole steps; the loop then writes a checkpoint and raises :class:`Stopped`, which the entry point reports
with what was kept. Checkpoints are also written on a time interval (:class:`CheckpointClock`)."""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator


class Stopped(KeyboardInterrupt):
    """A run stopped on request after writing a checkpoint; the message says where and at which step."""


class StopRequest:
    """``requested`` becomes True on SIGINT or SIGTERM while :func:`stop_requests` is active."""

    requested = False


@contextmanager
def stop_requests() -> Iterator[type[StopRequest]]:
    """Route SIGINT / SIGTERM to :class:`StopRequest` (main thread only; a second Ctrl-C interrupts at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield StopRequest
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        if StopRequest.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        StopRequest.requested = True

    for sig in previous:
        signal.signal(sig, handler)
    StopRequest.requested = False
    try:
        yield StopRequest
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        StopRequest.requested = False


class CheckpointClock:
    """Says when a checkpoint is due: every ``every_steps`` steps or ``minutes`` after the last one."""

    def __init__(self, every_steps: int, minutes: float) -> None:
        self.every_steps, self.seconds = every_steps, minutes * 60
        self.last = time.monotonic()

    def due(self, step: int) -> bool:
        if (self.every_steps and step % self.every_steps == 0) or \
                (self.seconds > 0 and time.monotonic() - self.last >= self.seconds):
            self.last = time.monotonic()
            return True
        return False
