"""Section 1, smoke: every stage of the project at a tiny size on the device, through its entry point.

Shrinking on every registered space; the SPOS search of the shrunk GPU space (evaluation in-process, and through one
RabbitMQ test server when a broker answers); final training and its evaluation; NB201's angle tau; and every
registered searcher through ``searching/main.py --searcher NAME --space NAME --demo`` on its home space and on
nb201, with :data:`SEARCHER_TINY`'s flags on top of its demo preset.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .check import Check
from .nb201_tau import drop_flags, nb201_tiny
from .smoke_mq import smoke_rabbitmq
from .stages import Stage, run_stages

EXPECTED_SEARCHERS = ("spos", "fairnas", "rsps", "darts", "pdarts", "proxylessnas", "pertnas")
"""Listed ``not present`` when not registered (a registry that lost one shows it)."""
STAGE_CAP = 90
"""Seconds each stage may take."""
SEARCH = "searching/main.py"
SMOKE_SPACES = ("nb201",)
"""Every searcher runs on its home space and on these (where it fits)."""

SPOS_TINY = ["--train_limit", "320", "--batch_size", "32", "--epochs", "1", "--bn_images", "32", "--bn_batch_size",
             "32", "--val_images", "32", "--population_num", "2", "--select_num", "1", "--crossover_num", "0",
             "--mutation_num", "1", "--max_epochs", "1", "--topk", "1", "--eval_threads", "1", "--min_flops", "0",
             "--max_flops", "1e12"]
SEARCHER_TINY = {
    "spos": SPOS_TINY, "fairnas": SPOS_TINY, "rsps": SPOS_TINY,
    "darts": ["--epochs", "1", "--steps_per_epoch", "1", "--eval_limit", "8"],
    "pdarts": ["--epochs", "1", "--eps_no_arch", "0", "--steps_per_epoch", "1", "--eval_limit", "8"],
    "proxylessnas": ["--train_limit", "320", "--warmup_epochs", "1", "--n_epochs", "1", "--val_images", "32",
                     "--train_batch_size", "32", "--grad_data_batch", "32"],
    "pertnas": ["--npop", "1", "--batch_size", "8", "--steps_per_epoch", "1", "--val_size", "16",
                "--fine_extra_steps", "0", "--topology_extra_steps", "0"],
}
"""Flags on top of a searcher's ``--demo`` on any space: one epoch (or step) of each phase on a few hundred images,
a population of two. A registered searcher not listed here runs its ``--demo`` alone."""


def smoke(check: Check, sec: dict) -> None:
    """The section: the stages above, several at once on CUDA (subprocesses), one after another in-process."""
    from anglenas.operations import Operations
    from anglenas.spaces import get_space, space_names

    smoke_dir = check.work / "smoke"
    how = (f"subprocesses, up to {check.parallel} at once" if check.subprocesses and check.parallel > 1
           else "subprocesses" if check.subprocesses else "in-process")
    sec["setting"] = (f"each entry point with --demo --device {check.dev} and tiny flags (logs in "
                      f"{check.work / 'logs'}), {how}, {STAGE_CAP} s cap each")
    stages = sec["tables"].setdefault("stages", {})
    gpu_ops = smoke_dir / "shrink-gpu" / "operations.json"

    def shrunk_or_full() -> None:  # the search reads the shrunk GPU space, the whole one if shrinking failed
        if not gpu_ops.exists():
            Operations.full(get_space("gpu")).save(gpu_ops)

    spos = ["--searcher", "spos", "--demo", *SEARCHER_TINY["spos"], "--operations_path", str(gpu_ops)]
    plan = [
        *(Stage(f"shrink {space}", "shrinking/main.py", shrink_argv(space, check.tiny, smoke_dir))
          for space in space_names()),
        Stage("train", "training/train_from_scratch.py",
              ["--demo", "--arch", "SPOS_ABS", "--epochs", "0.05", "--eval_limit", "16", "--eval_batch_size", "16",
               "--save", str(smoke_dir / "train")]),
        Stage("nb201 angle tau", "nas-bench-201/angle_tau.py", [*nb201_tiny(), "--save", str(smoke_dir / "nb201")]),
        *searcher_stages(smoke_dir),
        Stage("search (in-process evaluation)", SEARCH, [*spos, "--save", str(smoke_dir / "search")],
              after="shrink gpu", prepare=shrunk_or_full),
        Stage("eval", "training/train_from_scratch.py",
              ["--demo", "--eval", "--eval-resume", str(smoke_dir / "train" / "checkpoint.pt"), "--eval_limit", "16",
               "--eval_batch_size", "16"], after="train"),
    ]
    on_device = ["--device", check.dev, "--threads", str(check.threads)]
    for stage in plan:
        stage.argv += on_device
    for name in EXPECTED_SEARCHERS:
        if not any(stage.name.startswith(f"searcher {name} ") for stage in plan):
            stages[f"searcher {name}"] = {"status": "not present (not registered in anglenas.searchers.registry)"}
    run_stages(check, plan, stages, STAGE_CAP)
    shrunk_or_full()
    smoke_rabbitmq(check, stages, [*spos, *on_device], smoke_dir, STAGE_CAP)
    failed = [k for k, v in stages.items() if v["status"].startswith("failed")]
    sec["figures"]["stages failed"] = ", ".join(failed) or "none"
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(stages)} stages failed: {', '.join(failed)}")


def shrink_argv(space: str, tiny: bool, smoke_dir: Path) -> list[str]:
    """One round of shrinking ``space`` at its demo size: 1 epoch per stage, 2 children per operator (``--tiny``:
    no growing warm-up, a growing supernet's 11 warm-up stages)."""
    return ["--demo", "--space", space, "--first_stage_epochs", "1", "--other_stage_epochs", "1", "--max_rounds", "1",
            "--sample_num", "2", "--search_val_size", "1936", "--batch_size", "32", "--stop_threshold", "0",
            *(["--warmup_epochs", "0"] if tiny else []), "--save", str(smoke_dir / f"shrink-{space}")]


def searcher_stages(smoke_dir: Path) -> list[Stage]:
    """``searcher NAME on SPACE`` for every registered searcher, on its home space and :data:`SMOKE_SPACES` where it
    fits; flags its config lacks are left out (and named in the stage's row)."""
    from anglenas.searchers.registry import get_searcher, searcher_names, searchers_for
    from anglenas.spaces import get_space, space_names

    stages = []
    for name in searcher_names():
        searcher = get_searcher(name)
        known = config_flags(searcher.config)
        wanted = SEARCHER_TINY.get(name, [])
        missing = [a for a in wanted if a.startswith("--") and a not in known]
        spaces = dict.fromkeys([searcher.home_space, *(s for s in SMOKE_SPACES if s in space_names())])
        for space in spaces:
            if name not in searchers_for(get_space(space)):
                continue
            notes = {"flags not in its config, left out": " ".join(missing)} if missing else {}
            stages.append(Stage(f"searcher {name} on {space}", SEARCH,
                                ["--searcher", name, "--space", space, "--demo", *drop_flags(wanted, missing),
                                 "--save", str(smoke_dir / f"searcher-{name}-{space}")], notes=notes))
    return stages


def config_flags(cls: type) -> set[str]:
    """The flags ``anglenas.config.parse_config`` gives a config class: each field, its ``-`` spelling, aliases."""
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    return ({f"--{n}" for n in names} | {f"--{n.replace('_', '-')}" for n in names}
            | {f"--{alias}" for alias in getattr(cls, "flag_aliases", {})})
