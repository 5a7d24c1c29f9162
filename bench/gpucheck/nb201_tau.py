"""Section 6, NB201 tau, with the rest of the budget: the SPOS supernet on NB201 (CIFAR-10 from ``--data_dir``),
Kendall tau of the angle and of the weight magnitude against NB201's CIFAR-10 accuracies after every epoch, with the
original's optimiser semantics; the run is stopped (SIGTERM: it checkpoints) at the cap and keeps the epochs done."""
from __future__ import annotations

import glob
import time
from pathlib import Path

from .check import Check

SCRIPT = "nas-bench-201/angle_tau.py"
EPOCHS = 30
"""NB201Config's one-GPU schedule; the run is stopped at the cap and keeps the epochs done."""


def nb201_tiny() -> list[str]:
    """``angle_tau.py`` in seconds: 4 channels, one cell per stage, one epoch, two networks' accuracies."""
    return ["--demo", "--channels", "4", "--cells_per_stage", "1", "--epochs", "1", "--eval_epochs", "1",
            "--batch_size", "64", "--acc_archs", "2", "--rebn_images", "32", "--eval_images", "32",
            "--eval_batch_size", "32"]


def nb201_tau(check: Check, sec: dict) -> None:
    save = check.work / "nb201-tau"
    if check.tiny:
        argv = nb201_tiny()
    else:
        data = (["--dataset", "cifar10-jpg", "--data_dir", check.data_dir] if check.data_dir
                else ["--dataset", "embedded-12k"])
        argv = [*data, "--epochs", str(EPOCHS), "--eval_epochs", ",".join(map(str, range(1, EPOCHS + 1))),
                "--seeds", "1", "--acc_archs", "0"]
    argv += ["--optimizer_semantics", "original", "--device", check.dev, "--threads", str(check.threads),
             "--save", str(save)]
    known = check.help_flags(SCRIPT)
    missing = [a for a in argv if a.startswith("--") and a not in known]
    if missing:  # a flag the entry point does not have (another helper changed it): run without, and say so
        sec["figures"]["flags not in --help, left out"] = " ".join(missing)
        argv = drop_flags(argv, missing)
    sec["setting"] = f"{SCRIPT} {' '.join(argv)}"
    t0 = time.perf_counter()
    reserve = 35 if check.subprocesses else 2  # SIGTERM grace (the run checkpoints) and reading the results
    status = check.entry(SCRIPT, argv, check.work / "logs" / "nb201-tau.txt", check.caps.remaining() - reserve,
                         term_grace=20)
    sec["figures"]["run"] = status if status == "ok" else status + " (the epochs done before it are below)"
    sec["figures"]["seconds"] = round(time.perf_counter() - t0, 1)
    taus = epoch_taus(save)
    if not taus:
        raise RuntimeError(f"no epoch finished ({status})")
    sec["tables"]["tau vs NB201 CIFAR-10 per epoch"] = taus


def drop_flags(argv: list[str], flags: list[str]) -> list[str]:
    """``argv`` without ``flags`` and the values that follow each."""
    out, skip = [], False
    for a in argv:
        if a in flags:
            skip = True
            continue
        if skip and not a.startswith("--"):
            continue
        skip = False
        out.append(a)
    return out


def epoch_taus(save: Path) -> dict:
    """Epoch -> tau of the angle and the magnitude vs CIFAR-10 ground truth, from the runs' checkpoints."""
    from anglenas.checkpoint import load_checkpoint

    taus: dict[str, dict] = {}
    for path in sorted(glob.glob(str(save / "**" / "checkpoint.pt"), recursive=True)):
        ckpt = load_checkpoint(path)
        for record in ckpt.get("records", []) if isinstance(ckpt, dict) else []:
            row = {m: round(v.get("cifar10", float("nan")), 4) for m, v in record["tau"].items()}
            row["angle s"] = round(record.get("angle_seconds", 0.0), 3)
            # the first record of an epoch is its end; a checkpoint taken later inside the next epoch (a stop, the
            # checkpoint clock) may append another under the same epoch number
            taus.setdefault(f"{Path(path).parent.name} epoch {record['epoch']}", row)
    return taus
