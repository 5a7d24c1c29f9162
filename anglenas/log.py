"""Run logging on rank 0: timestamped lines (console and ``log.txt``), progress with ETA, TensorBoard scalars."""
from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path


def fmt_seconds(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(max(seconds, 0))))


class RunLogger:
    """Writes to stdout, ``<save>/log.txt`` and TensorBoard (``<save>/tb``); does nothing where ``enabled`` is
    False (ranks other than 0)."""

    def __init__(self, save_dir: str | Path | None, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self._file = None
        self._writer = None
        if enabled and save_dir is not None:
            save_dir = Path(save_dir)
            save_dir.mkdir(parents=True, exist_ok=True)
            self._file = open(save_dir / "log.txt", "a", buffering=1)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(save_dir / "tb"))

    def info(self, message: str) -> None:
        if not self.enabled:
            return
        line = f"[{datetime.datetime.now():%H:%M:%S}] {message}"
        print(line, flush=True)
        if self._file:
            self._file.write(line + "\n")

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, value, step)

    def figure(self, tag: str, fig, step: int) -> None:
        if self._writer is not None:
            self._writer.add_figure(tag, fig, step, close=False)

    def progress(self, desc: str, total: int, start: int = 0, every: int | None = None) -> "Progress":
        return Progress(self, desc, total, start, every)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._file:
            self._file.close()


class Progress:
    """One log line every ``every`` steps (default: ~20 lines per run, or every 10 s on a terminal) with rate
    and ETA."""

    def __init__(self, logger: RunLogger, desc: str, total: int, start: int = 0, every: int | None = None) -> None:
        self.logger, self.desc, self.total, self.done = logger, desc, total, start
        self.every = every or max(1, (total - start) // 20)
        self._t0, self._n0, self._last_print = time.perf_counter(), start, 0.0
        self._tty = sys.stdout.isatty()

    def update(self, n: int = 1, **metrics: float) -> None:
        self.done += n
        now = time.perf_counter()
        due = self.done % self.every == 0 or self.done == self.total or (self._tty and now - self._last_print > 10)
        if not due:
            return
        self._last_print = now
        rate = (self.done - self._n0) / max(now - self._t0, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        self.logger.info(f"{self.desc} {self.done}/{self.total} ({100 * self.done / max(self.total, 1):.0f}%) "
                         f"{shown} | {rate:.2f} it/s | ETA {fmt_seconds(eta)}")
