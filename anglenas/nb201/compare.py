"""Does ABS help every searcher? Every searcher that fits NAS-Bench-201, in the full space and in the spaces ABS
shrinks it to, judged by the ground truth of the cell each finds.

Per seed the table runs:

1. ABS on NB201 (the paper's setting: one round dropping 20 of the 30 operators by angle) at each shrink budget
   (``--budgets``, fractions of ``--shrink_epochs``): ``shrinking/main.py --space nb201``;
2. every searcher of ``--searchers`` in the full space and in the full-budget shrunk space, and those of
   ``--budget_searchers`` in the spaces of the smaller budgets: ``searching/main.py --searcher NAME --space nb201``.

Every run is a stage of the pipeline in a folder of its own (``SAVE/seed-N/shrink-B``, ``SAVE/seed-N/SPACE/LABEL``);
a finished one is kept and a killed table, started again, resumes where it stopped. SPOS and RSPS share one
supernet per seed and space. :mod:`anglenas.nb201.compare_report` turns the runs into ``compare.json``, the table
(``compare.md``) and the figure (``compare.png``).
"""
from __future__ import annotations

import functools
import json
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from anglenas.config import RuntimeConfig, field, override, parse_config
from anglenas.errors import UserError
from anglenas.log import RunLogger, fmt_seconds
from anglenas.nb201.api import Benchmark
from anglenas.operations import load_operations
from anglenas.runtime import available_cores, use_threads
from anglenas.search_result import read_search_result
from anglenas.stages.search import parse_search, run_search
from anglenas.stages.shrink import ShrinkConfig, Shrinker

Job = tuple[int, str, str]
"""(seed, space, label) of one run of the table; the label ``abs`` is the ABS run of a budget."""
RUNS = {"spos": ("spos", []), "fairnas": ("fairnas", ["--uneven_fairness"]), "rsps": ("rsps", []),
        "darts": ("darts", []), "darts2": ("darts", ["--unrolled"]), "pdarts": ("pdarts", []),
        "proxylessnas": ("proxylessnas", ["--target_hardware", "none"]), "pertnas": ("pertnas", [])}
"""Table label -> (searcher, its flags). darts2 is DARTS' second order; FairNAS' strict fairness over the unequal op
counts a global drop leaves repeats a site's ops to fill its paths; ProxylessNAS searches for accuracy alone, as
NB201's protocol (no hardware term)."""
TIMINGS = "timings.json"
RELAXED = ("darts", "darts2", "pdarts", "pertnas")
"""Labels whose searchers size their relaxed network with ``--init_channels`` / ``--layers``."""


@dataclass
class CompareConfig(RuntimeConfig):
    """The table's settings; ``--cpu`` and ``--demo`` are presets, the defaults NB201's own settings (a GPU)."""

    save: str = override("runs/nb201-compare")
    seeds: int = field(3, "seeds (seed, seed+1, ...): one shrink per seed serves every searcher", low=1)
    searchers: str = field(",".join(RUNS), f"the table's rows, comma-separated, of: {', '.join(RUNS)}")
    budgets: str = field("1,0.25", "ABS budgets as fractions of --shrink_epochs, comma-separated (the first is the "
                                   "table's ABS column)")
    budget_searchers: str = field("spos,darts", "rows also searched in the spaces of the budgets after the first")
    shrink_epochs: int = field(100, "ABS' supernet epochs before its one round (the full budget)", low=1)
    shrink_batch_size: int = field(256, "batch size of ABS' supernet training (NB201's SPOS supernet: 256)", low=1)
    shrink_lr: float = field(0.05, "learning rate of ABS' supernet training", low=0)
    drop: int = field(20, "operators ABS drops (of 30)", low=1, high=29)
    dataset: str = field("cifar10-jpg", "training images of every stage", choices=("embedded", "cifar10-jpg",
                                                                                   "cifar10"))
    data_dir: str = field("", "the CIFAR-10 JPEG tarball or python-pickle folder")
    resolution: int | None = field(None, "resize the images to this side (default: 32)", low=8)
    train_limit: int | None = field(None, "train every stage on a fixed subset of this many images (default: all)",
                                    low=64)
    channels: int = field(16, "channels of the first stage of every network (NB201: 16)", low=2)
    cells_per_stage: int = field(5, "cells per stage of every network (NB201: 5)", low=1)
    benchmark: str = field("", "ground truth: official NB201 / NATS-Bench file or CSV (default: the shipped table)")
    parallel: int = field(1, "runs at once (processes; each gets threads / parallel CPU threads): runs of one seed "
                             "in different spaces are independent", low=1)
    preset: str | None = field(None, "named settings: cpu = the whole table on 2 CPU cores in at most 2 hours",
                               choices=(None, "cpu"), presets=lambda: {"cpu": CPU})

    def labels(self) -> list[str]:
        return _names(self.searchers, "--searchers")

    def budget_list(self) -> list[float]:
        try:
            budgets = [float(b) for b in self.budgets.split(",") if b.strip()]
        except ValueError:
            raise UserError(f"--budgets must be comma-separated fractions, got {self.budgets!r}") from None
        if not budgets or any(not 0 < b <= 1 for b in budgets) or len(set(budgets)) != len(budgets):
            raise UserError(f"--budgets must be distinct fractions in (0, 1], got {self.budgets!r}")
        return budgets


def _names(text: str, flag: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown or not names:
        raise UserError(f"{flag}: unknown row(s) {unknown or text!r}; choose among {', '.join(RUNS)}")
    return names


SEARCH = {  # every searcher's schedule at NB201's settings (a GPU)
    "spos": ["--epochs", "250", "--batch_size", "256", "--lr", "0.05"],
    "rsps": ["--epochs", "250", "--batch_size", "256", "--lr", "0.05"],
    "fairnas": ["--epochs", "250", "--batch_size", "256", "--lr", "0.05"],
    "darts": ["--epochs", "50"], "darts2": ["--epochs", "50"], "pdarts": ["--epochs", "25"],
    "proxylessnas": [], "pertnas": [],
}
CPU = dict(dataset="cifar10-jpg", resolution=32, channels=16, cells_per_stage=2, train_limit=10000, shrink_epochs=4,
           shrink_batch_size=128, shrink_lr=0.1, threads=2, parallel=2, save="runs/nb201-compare-cpu")
"""``--preset cpu``: the NB201 supernet of ``angle_tau.py --preset cpu`` (C=16, N=2, 32 px) on a fixed 10k-image
subset of the real CIFAR-10 training set; each searcher's schedule is scaled (:data:`SEARCH_CPU`) so that the table
(3 seeds) ends within 2 hours on 2 cores, two runs at a time on one core each (measured in docs/nb201.md)."""
_SPOS_CPU = ["--epochs", "2", "--batch_size", "128", "--lr", "0.1", "--population_num", "8", "--max_epochs", "4",
             "--select_num", "3", "--crossover_num", "3", "--mutation_num", "3", "--bn_images", "128",
             "--bn_batch_size", "128", "--val_images", "250", "--eval_batch_size", "250"]
SEARCH_CPU = {
    "spos": _SPOS_CPU, "fairnas": _SPOS_CPU,
    "rsps": [*_SPOS_CPU, "--population_num", "32", "--max_epochs", "1"],
    "darts": ["--epochs", "2", "--batch_size", "64", "--steps_per_epoch", "20", "--eval_limit", "500"],
    "darts2": ["--epochs", "1", "--batch_size", "64", "--steps_per_epoch", "15", "--eval_limit", "500"],
    "pdarts": ["--epochs", "2", "--batch_size", "64", "--steps_per_epoch", "10", "--eps_no_arch", "1",
               "--eval_limit", "500"],
    "proxylessnas": ["--warmup_epochs", "1", "--n_epochs", "1", "--train_batch_size", "128", "--grad_data_batch", "128",
                     "--val_images", "250"],
    "pertnas": ["--npop", "1", "--epochs", "1", "--steps_per_epoch", "10", "--batch_size", "128",
                "--finetune_steps", "2", "--population_extra_steps", "0", "--fine_extra_steps", "3",
                "--val_size", "500"],
}
DEMO = dict(dataset="embedded", resolution=16, channels=8, cells_per_stage=1, shrink_epochs=2, seeds=1,
            searchers="spos,darts", budgets="1", threads=2, save="runs/nb201-compare-demo")
"""``--demo``: SPOS and DARTS, one seed, the embedded mini CIFAR-10 at 16 px: minutes on a CPU."""
_SPOS_DEMO = ["--epochs", "2", "--batch_size", "64", "--lr", "0.05", "--population_num", "8", "--max_epochs", "2",
              "--select_num", "3", "--crossover_num", "2", "--mutation_num", "2", "--bn_images", "128",
              "--bn_batch_size", "64", "--val_images", "128"]
SEARCH_DEMO = {
    "spos": _SPOS_DEMO, "fairnas": _SPOS_DEMO, "rsps": [*_SPOS_DEMO, "--population_num", "16", "--max_epochs", "1"],
    "darts": ["--epochs", "2", "--batch_size", "32", "--steps_per_epoch", "10"],
    "darts2": ["--epochs", "1", "--batch_size", "32", "--steps_per_epoch", "10"],
    "pdarts": ["--epochs", "2", "--eps_no_arch", "1", "--batch_size", "32", "--steps_per_epoch", "5"],
    "proxylessnas": ["--warmup_epochs", "1", "--n_epochs", "2", "--train_batch_size", "64", "--grad_data_batch", "64"],
    "pertnas": ["--npop", "1", "--epochs", "1", "--steps_per_epoch", "4", "--batch_size", "32", "--finetune_steps", "0",
                "--population_extra_steps", "0", "--fine_extra_steps", "2", "--val_size", "128"],
}
"""Tiny schedules of every row (``--demo --searchers ...`` runs any of them in seconds to minutes)."""
SCHEDULES = {"cpu": SEARCH_CPU, "demo": SEARCH_DEMO}


class Table:
    """The runs of one :class:`CompareConfig` (shrinks, then searches), each resumable, with the table's ETA."""

    def __init__(self, cfg: CompareConfig) -> None:
        self.cfg, self.save = cfg, Path(cfg.save)
        self.schedule = SCHEDULES.get("demo" if cfg.demo else cfg.preset or "", SEARCH)
        missing = [label for label in cfg.labels() if label not in self.schedule]
        if missing:
            raise UserError(f"{'--demo' if cfg.demo else '--preset ' + str(cfg.preset)} has no schedule for "
                            f"{', '.join(missing)}; pick --searchers among {', '.join(self.schedule)}")
        self.budgets = cfg.budget_list()
        self.threads = max(1, available_cores() // cfg.parallel if cfg.threads == 0 else cfg.threads // cfg.parallel)
        self.durations: dict[str, list[float]] = {}

    @functools.cached_property
    def bench(self) -> Benchmark:
        return Benchmark.load(self.cfg.benchmark or None)

    @functools.cached_property
    def logger(self) -> RunLogger:
        """The table's own log (the runs log into their folders)."""
        return RunLogger(self.save)

    # -- the jobs -----------------------------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        """(seed, space, label) of every job in order; space ``shrink-B`` is the ABS run of budget B."""
        cfg, out = self.cfg, []
        for seed in range(cfg.seed, cfg.seed + cfg.seeds):
            out += [(seed, space_name(b), "abs") for b in self.budgets]
            out += [(seed, "full", label) for label in cfg.labels()]
            out += [(seed, space_name(b, abs_space=True), label) for i, b in enumerate(self.budgets)
                    for label in cfg.labels() if i == 0 or label in _names(cfg.budget_searchers, "--budget_searchers")]
        return out

    def folder(self, seed: int, space: str, label: str) -> Path:
        return self.save / f"seed-{seed}" / (space if label == "abs" else f"{space}/{label}")

    def done(self, seed: int, space: str, label: str) -> bool:
        if label == "abs":
            return (self.folder(seed, space, label) / "operations.json").is_file()
        return result_path(self, seed, space, label).is_file()

    def needs(self, job: Job) -> list[Job]:
        """The runs ``job`` waits for: a search in a shrunk space its shrink; RSPS SPOS' supernet of its space."""
        seed, space, label = job
        out = [(seed, shrink_of(space), "abs")] if space.startswith("abs-") else []
        return out + ([(seed, space, "spos")] if label == "rsps" and "spos" in self.cfg.labels() else [])

    def run(self) -> list[Job]:
        """Run every job not finished yet, ``--parallel`` at a time as soon as the runs it needs are done; the
        table's progress and ETA after each."""
        jobs, t0 = self.jobs(), time.perf_counter()
        todo = [j for j in jobs if not self.done(*j)]
        running: dict[Future, tuple[Job, float]] = {}
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(self.cfg.parallel, mp_context=context) as pool:
            while todo or running:
                ready = [j for j in todo if all(self.done(*n) for n in self.needs(j))]
                for job in ready[:self.cfg.parallel - len(running)]:
                    todo.remove(job)
                    self.logger.info(f"seed {job[0]}, {job[1]}: {job[2]} ({jobs.index(job) + 1}/{len(jobs)})")
                    running[pool.submit(run_job, self.cfg, job, self.threads)] = (job, time.perf_counter())
                if not running:
                    raise RuntimeError(f"runs {todo} wait for runs that are not planned")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    job, start = running.pop(future)
                    cpu = future.result()  # a failed run raises here, after the others end
                    wall = time.perf_counter() - start
                    self._record_time(*job, wall, cpu)
                    self.durations.setdefault(job[2], []).append(wall)
                left = todo + [j for j, _ in running.values()]
                self.logger.info(f"table: {len(jobs) - len(left)}/{len(jobs)} runs done in "
                                 f"{fmt_seconds(time.perf_counter() - t0)} | ETA "
                                 f"{fmt_seconds(self._eta(left) / self.cfg.parallel)}")
        return jobs

    def run_one(self, job: Job) -> None:
        seed, space, label = job
        self._shrink(seed, space) if label == "abs" else self._search(seed, space, label)

    def _record_time(self, seed: int, space: str, label: str, wall: float, cpu: float) -> None:
        """Wall and CPU seconds of every finished run, in ``SAVE/timings.json`` (the CPU time of a run does not
        depend on what else the machine runs)."""
        path = self.save / TIMINGS
        times = json.loads(path.read_text()) if path.is_file() else {}
        times[f"{seed}/{space}/{label}"] = {"wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1)}
        write_json(path, times)

    def _eta(self, left: list[tuple[int, str, str]]) -> float:
        """The runs left, each at the mean duration of its label so far (else of every run so far)."""
        every = [d for ds in self.durations.values() for d in ds]
        mean = sum(every) / len(every) if every else 0.0
        return sum(sum(self.durations[j[2]]) / len(self.durations[j[2]]) if j[2] in self.durations else mean
                   for j in left)

    # -- one job ------------------------------------------------------------------------------------------------
    def _data(self, label: str = "") -> list[str]:
        """The data flags of a run: PertNAS reads its own source (``--train_path``) at its own resolution; its
        schedule caps its steps instead of ``--train_limit``."""
        cfg = self.cfg
        flags = ["--threads", str(self.threads), "--device", cfg.device]
        if label == "pertnas":
            return flags + ["--train_path", cfg.data_dir or "embedded"]
        flags += ["--dataset", cfg.dataset]
        flags += ["--data_dir", cfg.data_dir] if cfg.data_dir else []
        flags += ["--resolution", str(cfg.resolution)] if cfg.resolution else []
        return flags + (["--train_limit", str(cfg.train_limit)] if cfg.train_limit else [])

    def _size(self, label: str) -> list[str]:
        cfg = self.cfg
        if label in RELAXED:
            return ["--init_channels", str(cfg.channels), "--layers", str(cfg.cells_per_stage)]
        return ["--width_mult", str(cfg.channels / 16), "--depth", str(cfg.cells_per_stage), "--stem_stride", "1"]

    def _shrink(self, seed: int, space: str) -> None:
        cfg = self.cfg
        budget = budget_of(space)
        argv = [*self._data(), *self._size("abs"), "--space", "nb201", "--seed", str(seed), "--workers", "0",
                "--first_stage_epochs", str(max(1, round(budget * cfg.shrink_epochs))),
                "--lr_horizon_epochs", str(cfg.shrink_epochs), "--drops_per_round", str(cfg.drop),
                "--batch_size", str(cfg.shrink_batch_size), "--lr", str(cfg.shrink_lr),
                "--max_rounds", "1", "--stop_threshold", "0", "--save", str(self.folder(seed, space, "abs"))]
        Shrinker(parse_config(ShrinkConfig, argv)).run()

    def _search(self, seed: int, space: str, label: str) -> None:
        searcher, flags = RUNS[label]
        save = self.folder(seed, space, label)
        argv = [*self._data(label), *self._size(label), *flags, *self.schedule[label], "--space", "nb201",
                "--seed", str(seed), "--save", str(save)]
        if space != "full":
            argv += ["--operations_path", str(self.folder(seed, shrink_of(space), "abs") / "operations.json")]
        elif label == "pdarts":  # upstream's three stages (8 -> 5 -> 3 -> 1 ops) on NB201's 5: 5 -> 3 -> 2 -> 1; in
            argv += ["--num_to_drop", "2,1,1"]  # a shrunk space one stage from the file's ops, as ABS' PDARTS
        if label in ("spos", "rsps", "fairnas"):
            argv += ["--workers", "0"]
        if label == "rsps" and "spos" in self.cfg.labels():  # SPOS' supernet of this seed and space serves RSPS
            spos = self.folder(seed, space, "spos") / "supernet.pt"
            if spos.is_file():
                argv += ["--supernet", str(spos)]
        if label == "pertnas":
            argv += ["--note", "run"]
        run_search(*parse_search(argv, searcher))


def run_job(cfg: CompareConfig, job: Job, threads: int) -> float:
    """Run one job of the table in this (worker) process on ``threads`` CPU threads; its CPU seconds."""
    use_threads(threads)
    cpu = time.process_time()
    Table(cfg).run_one(job)
    return time.process_time() - cpu


def space_name(budget: float, abs_space: bool = False) -> str:
    """``shrink-1`` (the ABS run of budget 1), ``abs-1`` (the space it wrote)."""
    return f"{'abs' if abs_space else 'shrink'}-{budget:g}"


def budget_of(space: str) -> float:
    return float(space.split("-", 1)[1])


def shrink_of(space: str) -> str:
    return "shrink-" + space.split("-", 1)[1]


def result_path(table: Table, seed: int, space: str, label: str) -> Path:
    folder = table.folder(seed, space, label)
    return folder / "search-run" / "search_result.json" if label == "pertnas" else folder / "search_result.json"


def space_ops(table: Table, seed: int, space: str) -> list[list[int]]:
    """The op ids per edge of a space of the table (all 5 everywhere in the full space)."""
    if space == "full":
        return [list(range(5)) for _ in range(6)]
    return load_operations(table.folder(seed, shrink_of(space), "abs") / "operations.json").ops


def load_result(table: Table, seed: int, space: str, label: str):
    return read_search_result(result_path(table, seed, space, label))


def write_json(path: Path, doc: dict) -> None:
    from anglenas.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
