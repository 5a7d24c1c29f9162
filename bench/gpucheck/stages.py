"""Entry points run as stages of a section: one after another in this process, or up to ``check.parallel`` at once
as subprocesses, each pinned to its own share of the cores (a tiny stage spends most of its time starting Python and
launching small kernels, which several processes do side by side)."""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .check import Check, capped, launch, outcome, stop

NOT_REACHED = "not reached: the section's time cap came first"
CAP_DURING = "failed: the section's time cap came during this stage"


@dataclass
class Stage:
    """``python ROOT/script argv`` as a named stage; ``after``: the stage whose output it reads (it starts once
    that one has ended, whatever its status; list it after that one, the order of a run in-process); ``prepare``:
    called just before it starts; ``notes``: shown in its row."""

    name: str
    script: str
    argv: list[str]
    after: str | None = None
    prepare: Callable[[], None] | None = None
    notes: dict = field(default_factory=dict)


def run_stages(check: Check, stages: list[Stage], table: dict, cap: float) -> None:
    """Run ``stages`` (each within ``cap`` seconds and the section's cap), writing each one's status and seconds
    into ``table`` (and the report to disk) as it ends. Stages not selected by ``--smoke_stages`` are skipped."""
    chosen = []
    for stage in stages:
        selected = check.selected(stage.name)
        table[stage.name] = {"status": NOT_REACHED if selected else "skipped: not selected by --smoke_stages",
                             **stage.notes}
        chosen += [stage] if selected else []
    if check.subprocesses and check.parallel > 1:
        run_parallel(check, chosen, table, cap)
        return
    for stage in chosen:
        t0 = time.perf_counter()
        table[stage.name]["status"] = CAP_DURING
        if stage.prepare:
            stage.prepare()
        status = check.entry(stage.script, stage.argv, log_path(check, stage), cap)
        finish(check, table, stage, status, t0)


def run_parallel(check: Check, stages: list[Stage], table: dict, cap: float) -> None:
    """Up to ``check.parallel`` stages at once, each pinned to one of ``check.parallel`` equal shares of the cores,
    started in their order (one whose ``after`` has not ended lets the next go first); a stage still running at the
    section's cap is stopped."""
    cores = sorted(os.sched_getaffinity(0))
    share = max(len(cores) // check.parallel, 1)
    slots = [cores[i * share:(i + 1) * share] or cores for i in range(check.parallel)]
    pending, running = list(stages), {}  # slot -> (stage, process, start, timeout)
    try:
        while pending or running:
            for slot, (stage, proc, t0, timeout) in list(running.items()):
                code = proc.poll()
                if code is None and time.perf_counter() - t0 < timeout:
                    continue
                stop(proc)
                status = capped(timeout) if code is None else outcome(code, log_path(check, stage))
                finish(check, table, stage, status, t0)
                del running[slot]
            busy = {s.name for s in pending} | {s.name for s, *_ in running.values()}
            for slot in (i for i in range(len(slots)) if i not in running):
                stage = next((s for s in pending if s.after not in busy), None)
                if stage is None:
                    break
                pending.remove(stage)
                table[stage.name]["status"] = CAP_DURING
                if stage.prepare:
                    stage.prepare()
                timeout = max(min(cap, check.caps.remaining() - 2), 1)
                running[slot] = (stage, launch(stage.script, stage.argv, log_path(check, stage), slots[slot]),
                                 time.perf_counter(), timeout)
            time.sleep(0.1)
    finally:
        for _, proc, _, _ in running.values():
            stop(proc)


def log_path(check: Check, stage: Stage) -> Path:
    """WORK/logs/NAME.txt, the stage's name with every run of other characters than letters, digits, ``._-`` as
    one ``-``."""
    return check.work / "logs" / (re.sub(r"[^A-Za-z0-9._-]+", "-", stage.name).strip("-") + ".txt")


def finish(check: Check, table: dict, stage: Stage, status: str, t0: float) -> None:
    table[stage.name].update(status=status, seconds=round(time.perf_counter() - t0, 1))
    check.write()
