"""User-facing errors: one clear line on stderr and a non-zero exit, never a traceback."""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., object])


class UserError(Exception):
    """Bad input from the user: the message names the problem and the fix."""


def cli(main: F) -> F:
    """Wrap an entry point so that a :class:`UserError` prints ``error: ...`` and exits with code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt as exc:  # Stopped (a checkpoint was written) says so in its message
            print(f"stopped: {exc}" if str(exc) else "interrupted outside a training loop: work since the last "
                  "checkpoint written (see the log) is lost; run the same command again to resume from it",
                  file=sys.stderr)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
