"""The run of the GPU check: its settings, the report being filled (rewritten after every figure) and the running of
the project's entry points, as a subprocess or in this process."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import runpy
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
from common import device_name

from anglenas.checkpoint import atomic_write_text

from .caps import Caps, TimeCap
from .report import markdown

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Check:
    """The run: settings, the report being filled and its files. ``threads``: the ``--threads`` given to the entry
    points (0: every core they may use); ``parallel``: how many entry points may run at once as subprocesses."""

    out: Path
    work: Path
    device: torch.device
    tiny: bool
    data_dir: str | None
    subprocesses: bool
    budget: float
    smoke_stages: list[str] = field(default_factory=list)
    threads: int = 0
    parallel: int = 1
    started: float = field(default_factory=time.monotonic)
    caps: Caps = field(default_factory=Caps)
    report: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.dev = "cuda" if self.device.type == "cuda" else "cpu"
        self.report.update(
            device=device_name(self.device), torch=torch.__version__, cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            python=platform.python_version(), host_cpus=os.cpu_count(), tiny=self.tiny,
            started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), sections={})
        if self.device.type == "cuda":
            props = torch.cuda.get_device_properties(self.device)
            self.report.update(gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                               multiprocessors=props.multi_processor_count)

    def selected(self, stage: str) -> bool:
        """Whether a smoke stage runs: all, or those whose name starts with one of ``--smoke_stages``."""
        return not self.smoke_stages or stage.startswith(tuple(self.smoke_stages))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def write(self) -> None:
        self.report["wall_seconds"] = round(self.elapsed(), 1)
        atomic_write_text(self.out / "gpu_check.json", json.dumps(self.report, indent=1, default=str) + "\n")
        atomic_write_text(self.out / "gpu_check.md", markdown(self.report))

    def entry(self, script: str, argv: list[str], log: Path, timeout: float, term_grace: float = 0.0) -> str:
        """Run ``ROOT/script argv`` (a subprocess, or in-process with ``runpy``), output to ``log``; returns
        ``ok`` or ``failed: ...``. A subprocess gets ``timeout`` seconds (``term_grace`` > 0: SIGTERM first, so
        that it checkpoints)."""
        timeout = max(min(timeout, self.caps.remaining() - 2), 1)
        if not self.subprocesses:
            return self._in_process(script, argv, log, timeout)
        proc = launch(script, argv, log)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(proc, term_grace)
            return capped(timeout)
        finally:
            stop(proc)
        return outcome(code, log)

    def _in_process(self, script: str, argv: list[str], log: Path, timeout: float) -> str:
        log.parent.mkdir(parents=True, exist_ok=True)
        code, threads = 0, torch.get_num_threads()
        with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f), \
                self.caps.cap(timeout, script) as mine:
            saved, sys.argv = sys.argv, [str(ROOT / script), *argv]
            try:
                runpy.run_path(str(ROOT / script), run_name="__main__")
            except TimeCap as exc:
                if exc.args[1] is not mine:
                    raise
                return capped(timeout)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # noqa: BLE001  (reported as the stage's failure)
                traceback.print_exc(file=f)
                code = 1
            finally:
                sys.argv = saved
                torch.set_num_threads(threads)
        if code and mine[2]:  # the cap came inside code that turned it into another error (e.g. torch.save's)
            return capped(timeout)
        if code:
            self.caps.raise_fired()
        return outcome(code, log)

    def help_flags(self, script: str) -> set[str]:
        """The ``--flags`` that ``script --help`` lists (read at run time)."""
        log = self.work / "logs" / (Path(script).stem + "-help.txt")
        self.entry(script, ["--help"], log, 120)
        return set(re.findall(r"(--[A-Za-z0-9_-]+)", log.read_text(errors="replace")))


def launch(script: str, argv: list[str], log: Path, cores: list[int] | None = None) -> subprocess.Popen:
    """Start ``python ROOT/script argv`` with its output in ``log``; ``cores``: the only CPU cores it may use
    (its threads follow: ``anglenas.runtime.use_threads`` counts the cores a process may use)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(len(cores))} if cores else None
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, str(ROOT / script), *argv], cwd=ROOT, stdout=f,
                                stderr=subprocess.STDOUT, env=env, preexec_fn=pin)


def stop(proc: subprocess.Popen, term_grace: float = 0.0) -> None:
    """End ``proc`` if it still runs: SIGTERM and up to ``term_grace`` seconds to exit (when > 0), then SIGKILL."""
    if proc.poll() is not None:
        return
    if term_grace:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=term_grace)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def outcome(code: int, log: Path) -> str:
    """``ok`` for exit code 0, else ``failed: exit CODE: `` and the log's last lines."""
    if code == 0:
        return "ok"
    return f"failed: exit {code}: " + " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])[-400:]


def capped(timeout: float) -> str:
    return f"failed: stopped at its time cap of {timeout:.0f} s"
