"""Nested wall-clock caps on the main thread (SIGALRM): a section, and an entry point run in-process inside it."""
from __future__ import annotations

import contextlib
import signal
import time
from typing import Iterator


class TimeCap(BaseException):
    """A time cap was reached (a BaseException, so that no ``except Exception`` of the code under test eats it).
    ``args``: (message, the cap's entry as ``Caps.cap`` yielded it)."""


class Caps:
    """``with caps.cap(seconds, label) as mine:`` raises :class:`TimeCap` in the block once ``seconds`` have
    passed, or once an enclosing cap is reached (``exc.args[1] is mine`` tells which)."""

    def __init__(self) -> None:
        self.stack: list[list] = []  # [deadline, label, fired]
        signal.signal(signal.SIGALRM, self._fire)

    def _fire(self, signum, frame) -> None:
        live = [c for c in self.stack if not c[2]]
        if not live:
            return
        first = min(live, key=lambda c: c[0])
        if first[0] > time.monotonic() + 1e-3:
            self._arm()
            return
        first[2] = True
        raise TimeCap(f"time cap of {first[1]} reached", first)

    def _arm(self) -> None:
        live = [c[0] for c in self.stack if not c[2]]
        signal.setitimer(signal.ITIMER_REAL, max(min(live) - time.monotonic(), 1e-3) if live else 0)

    def remaining(self) -> float:
        """Seconds to the nearest live cap (infinite with none)."""
        live = [c[0] for c in self.stack if not c[2]]
        return min(live) - time.monotonic() if live else float("inf")

    def raise_fired(self) -> None:
        """Raise :class:`TimeCap` again for a live block whose cap fired (code inside it may have turned the first
        one into another error)."""
        for entry in self.stack:
            if entry[2]:
                raise TimeCap(f"time cap of {entry[1]} reached", entry)

    @contextlib.contextmanager
    def cap(self, seconds: float, label: str) -> Iterator[list]:
        entry = [time.monotonic() + seconds, f"{label} ({seconds:.0f} s)", False]
        self.stack.append(entry)
        self._arm()
        try:
            yield entry
        finally:
            self.stack.remove(entry)
            self._arm()
