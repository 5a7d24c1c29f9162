"""Every ``--demo`` of every entry point, the work it plans (counted by hand from its parsed settings, without
running it) and its measured wall time on 2 CPU cores (docs/benchmarks.md, "Every demo").

    python tests/demo_plans.py                 # print every demo's plan
    python tests/demo_plans.py --measure [ID ...]   # run them (all, or those IDs), print their times as JSON lines

A demo's work is a few counts, each a unit whose cost is fixed by the demo's sizes: gradient steps (``train``),
candidates evaluated and the images each one's BN recalibration and scoring go through (``eval``), fine-tune steps
(``finetune``), scoring rounds (``scoring``). ``tests/test_demos.py`` scales each demo's measured time by the
largest ratio of planned to measured counts and checks that it stays under 10 minutes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import resource
import runpy
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import anglenas.config  # noqa: E402
import anglenas.stages.search  # noqa: E402
from anglenas.operations import Operations, load_operations  # noqa: E402
from anglenas.searchers.registry import get_searcher, searcher_names, searchers_for  # noqa: E402
from anglenas.spaces import get_space, space_names  # noqa: E402

IMAGES = {"embedded": (2000, 500), "embedded-12k": (10000, 2000)}
"""(training, test) images of the data sets shipped in the package (anglenas/data/README.md)."""
LIMIT_SECONDS = 600.0
"""Every demo finishes in under 10 minutes on 2 cores."""


@dataclasses.dataclass(frozen=True)
class Demo:
    id: str
    script: str  # relative to the repository root
    argv: tuple[str, ...]


def package_spaces() -> list[str]:
    """The spaces the package registers (tests register toy ones of their own)."""
    return [s for s in space_names() if type(get_space(s)).__module__.startswith("anglenas.")]


def package_searchers() -> list[str]:
    """The searchers the package registers."""
    return [n for n in searcher_names() if get_searcher(n).run.__module__.startswith("anglenas.")]


def _demos() -> list[Demo]:
    out = [Demo(f"shrink-{s}", "shrinking/main.py", ("--demo", "--space", s)) for s in package_spaces()]
    for name in package_searchers():
        searcher = get_searcher(name)
        out.append(Demo(f"search-{name}", "searching/main.py", ("--searcher", name, "--demo")))
        out += [Demo(f"search-{name}-{s}", "searching/main.py", ("--searcher", name, "--space", s, "--demo"))
                for s in package_spaces() if name in searchers_for(get_space(s)) and s != searcher.home_space]
    out += [Demo("imagenet_arch_search", "searching/imagenet_arch_search.py", ("--demo",)),
            Demo("darts-train_search", "darts-master/train_search.py", ("--demo",)),
            Demo("pdarts-train_search", "pdarts-master/train_search.py", ("--demo",)),
            Demo("search_evolutionary", "darts-master/search_evolutionary.py", ("--demo",)),
            Demo("darts-train", "darts-master/train.py", ("--demo",))]
    for space in package_spaces():  # the network a demo trains is its --arch: one of each space
        arch = next(iter(get_space(space).published))
        darts = ("--darts",) if space == "darts" else ()
        out.append(Demo(f"train-{space}", "training/train_from_scratch.py", ("--demo", *darts, "--arch", arch)))
    out += [Demo(f"nb201-{name}", f"nas-bench-201/{name}.py", ("--demo",))
            for name in ("angle_tau", "drop_ops", "search", "train_supernet", "standalone_tau")]
    out.append(Demo("nb201-train_arch", "nas-bench-201/train_arch.py", ("--demo", "--index", "6111")))
    out.append(Demo("nb201-compare_searchers", "nas-bench-201/compare_searchers.py", ("--demo",)))
    return out


DEMOS = _demos()
"""Every ``--demo`` command line: each entry point's, and ``searching/main.py`` for every searcher on every space
it fits (its own space as ``search-NAME``)."""
NOT_PLANNED = {"searching/test_server.py": "serves requests until stopped; each request is a candidate of the "
                                           "search that sent it, counted in that search's plan"}
"""Entry points with a ``--demo`` that plans no work of its own here."""


# -- the settings a demo parses --------------------------------------------------------------------------------------
class _Parsed(Exception):
    def __init__(self, searcher, cfg):
        super().__init__("parsed")
        self.searcher, self.cfg = searcher, cfg


def settings(script: str, argv: list[str] | tuple[str, ...]) -> tuple[Any, Any]:
    """(searcher or None, settings) that ``script`` parses from ``argv``, through its own parsing, without running."""
    real, real_search = anglenas.config.parse_config, anglenas.stages.search.run_search
    active = True  # a module first imported meanwhile binds the stand-ins for good: afterwards they run the real ones

    def parse(cls, argv=None, *args, **kwargs):
        cfg = real(cls, argv, *args, **kwargs)
        if active:
            raise _Parsed(None, cfg)
        return cfg

    def search(searcher, cfg):
        if active:
            raise _Parsed(searcher, cfg)
        return real_search(searcher, cfg)

    saved = anglenas.config.parse_config, anglenas.stages.search.run_search
    anglenas.stages.search.run_search = search
    if not script.startswith(("searching/main", "searching/imagenet", "darts-master/train_search",
                              "pdarts-master", "darts-master/search_evolutionary")):
        anglenas.config.parse_config = parse
    try:
        runpy.run_path(str(ROOT / script))["main"](list(argv))
    except _Parsed as got:
        return got.searcher, got.cfg
    finally:
        active = False
        anglenas.config.parse_config, anglenas.stages.search.run_search = saved
    raise AssertionError(f"{script} ran without parsing its settings")


# -- the work, counted by hand -----------------------------------------------------------------------------------------
def _train_images(cfg: Any, held_out: bool) -> int:
    """Training images of an in-memory data set after ``--train_limit`` and, for the search stages, the held-out
    search-val (``--search_val_size``, default a tenth)."""
    dataset = "embedded" if getattr(cfg, "train_path", None) == "embedded" else cfg.dataset
    n = IMAGES[dataset][0]
    n = min(n, getattr(cfg, "train_limit", None) or n)
    if held_out:
        n -= getattr(cfg, "search_val_size", None) or max(1, n // 10)
    return n


def _operations(searcher, cfg) -> Operations:
    space = get_space(cfg.space) if cfg.space else None
    if cfg.operations_path:
        return load_operations(cfg.operations_path, space)
    return Operations.full(space or get_space(searcher.home_space))


def plan_shrink(cfg) -> dict[str, int]:
    r = cfg.resolved()
    spe = _train_images(r, held_out=True) // r.batch_size
    rounds = r.max_rounds  # at most: shrinking stops earlier once the space is small enough
    warmup = getattr(get_space(r.space), "warmup_stages", 0) * max(1, round(r.warmup_epochs * spe)) \
        if r.warmup_epochs else 0
    return {"train": spe * (r.first_stage_epochs + (rounds - 1) * r.other_stage_epochs) + warmup,
            "scoring": rounds * r.sample_num}


def plan_spos(searcher, cfg) -> dict[str, int]:
    n = _train_images(cfg, held_out=True)
    val = cfg.val_images or (IMAGES[cfg.dataset][0] - n)
    candidates = cfg.population_num * cfg.max_epochs  # at most: a spent space yields fewer
    return {"train": 0 if cfg.supernet else cfg.epochs * (n // cfg.batch_size),  # path-steps (FairNAS: m a step)
            "eval": candidates * (cfg.bn_images + val)}


def _darts_steps(cfg) -> int:
    n = _train_images(cfg, held_out=False)
    weights = math.floor(cfg.train_portion * n)
    spe = min(weights, n - weights) // cfg.batch_size
    return min(spe, cfg.steps_per_epoch or spe)


def plan_darts(searcher, cfg) -> dict[str, int]:
    return {"train": cfg.epochs * _darts_steps(cfg)}


def plan_pdarts(searcher, cfg) -> dict[str, int]:
    ops = _operations(searcher, cfg)
    if cfg.num_to_drop.strip():
        stages = len(cfg.num_to_drop.replace(",", " ").split())
    else:  # upstream's 3 stages on the DARTS space without an operations file, else one
        stages = 3 if ops.space.name == "darts" and not cfg.operations_path else 1
    return {"train": stages * cfg.epochs * _darts_steps(cfg)}


def plan_proxyless(searcher, cfg) -> dict[str, int]:
    return {"train": (cfg.warmup_epochs + cfg.n_epochs) * (_train_images(cfg, held_out=True) // cfg.train_batch_size)}


def plan_pertnas(searcher, cfg) -> dict[str, int]:
    """At most: every member trains once per site with a choice, the fine-grained phase once per such site, the
    DARTS cell's topology phase 3 times (nodes 1-3, fine-tuning their 3 + 4 + 5 incoming edges)."""
    from anglenas.searchers.pertnas.sites import Sites

    sites = Sites.of(_operations(searcher, cfg))
    scored = [len(c) for c in sites.candidates if len(c) > 1]
    n = IMAGES["embedded"][0] - (0 if cfg.val_on_test else cfg.val_size)
    spe = min(n // cfg.batch_size, cfg.steps_per_epoch or n)
    topology = 3 if sites.darts_cell else 0
    trainings = cfg.npop * len(scored) + len(scored) + topology
    finetunes = (cfg.npop * sum(scored) * (cfg.finetune_steps + cfg.population_extra_steps + 1)
                 + sum(scored) * (cfg.finetune_steps + cfg.fine_extra_steps + 1)
                 + (12 if topology else 0) * (cfg.finetune_steps + cfg.topology_extra_steps + 1))
    return {"train": trainings * cfg.epochs * spe, "finetune": finetunes}


SEARCH_PLANS = {"spos": plan_spos, "fairnas": plan_spos, "rsps": plan_spos, "darts": plan_darts,
                "pdarts": plan_pdarts, "proxylessnas": plan_proxyless, "pertnas": plan_pertnas}


def plan_train(cfg) -> dict[str, int]:
    if cfg.eval:
        return {"eval": 1}
    spe = _train_images(cfg, held_out=False) // cfg.batch_size
    return {"train": round(cfg.epochs * spe) if cfg.epochs > 0 else cfg.total_iters}


def plan_darts_train(cfg) -> dict[str, int]:
    from anglenas.stages.train_cifar import RECIPES

    if cfg.eval:
        return {"eval": 1}
    batch = cfg.batch_size or min(r.batch_size for r in RECIPES.values())  # unset: the genotype searcher's recipe
    spe = IMAGES[cfg.dataset][0] // batch
    return {"train": cfg.epochs * min(spe, cfg.steps_per_epoch or spe)}


def plan_nb201(script: str, cfg) -> dict[str, int]:
    """Per seed: the supernet (NB201 trains on every embedded training image), the final accuracies of
    ``--acc_archs`` cells with and without ReBN, then drop_ops' DARTS-alpha supernet or search's two evolutions."""
    spe = IMAGES[cfg.dataset][0] // cfg.batch_size
    name = Path(script).stem
    train, evals = cfg.epochs * spe, 0
    if name != "train_supernet":
        evals += 2 * cfg.acc_archs * (cfg.eval_images + cfg.rebn_images)
    if name == "drop_ops":
        train += cfg.epochs * spe
    if name == "search":
        evals += 2 * cfg.population_num * cfg.max_epochs * (cfg.eval_images + cfg.rebn_images)
    return {"train": cfg.seeds * train, "eval": cfg.seeds * evals}


def plan_standalone(script: str, cfg) -> dict[str, int]:
    n = min(IMAGES[cfg.dataset][0], cfg.train_limit or IMAGES[cfg.dataset][0])
    cells = len(cfg.cells.split(",")) if getattr(cfg, "cells", "").strip() else 50 if hasattr(cfg, "cells") else 1
    return {"train": cells * cfg.epochs * (n // cfg.batch_size)}


def plan_compare(cfg) -> dict[str, int]:
    """The table's runs (shrinks and searches), each a stage with its own tiny settings: measured whole."""
    from anglenas.nb201.compare import Table

    return {"runs": len(Table(cfg).jobs())}


def plan(script: str, argv: list[str] | tuple[str, ...]) -> dict[str, int]:
    """The work ``script`` plans for ``argv``, counted from its parsed settings."""
    searcher, cfg = settings(script, argv)
    if searcher is not None:
        return SEARCH_PLANS[searcher.name](searcher, cfg)
    name = Path(script).stem
    if script == "shrinking/main.py":
        return plan_shrink(cfg)
    if script == "training/train_from_scratch.py":
        return plan_train(cfg)
    if script == "darts-master/train.py":
        return plan_darts_train(cfg)
    if name in ("train_arch", "standalone_tau"):
        return plan_standalone(script, cfg)
    if name == "compare_searchers":
        return plan_compare(cfg)
    return plan_nb201(script, cfg)


# -- the Makefile's demo targets ---------------------------------------------------------------------------------------
MAKE_TARGETS = ("demo", "demo-darts", "demo-nb201")


def makefile_commands(out: Path, makefile: Path = ROOT / "Makefile") -> dict[str, list[tuple[str, list[str]]]]:
    """{target: [(script, argv), ...]} of the Makefile's demo targets, with ``OUT`` set to ``out``."""
    text = makefile.read_text().replace("\\\n", " ")
    variables = dict(re.findall(r"^([A-Z_]+) :?= (.*)$", text, flags=re.M))
    variables.update(OUT=str(out), PY=sys.executable)

    def expand(line: str) -> str:
        previous = None
        while previous != line:
            previous = line
            line = re.sub(r"\$\(abspath ([^()]*)\)", lambda m: str(Path(m.group(1)).absolute()), line)
            line = re.sub(r"\$\(([A-Z_]+)\)", lambda m: variables.get(m.group(1), ""), line)
        return line

    targets: dict[str, list[tuple[str, list[str]]]] = {}
    for target in MAKE_TARGETS:
        body = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, flags=re.M).group(1)
        commands = []
        for line in body.splitlines():
            line = expand(line.strip())
            if line.startswith("@"):
                continue
            folder = ""
            if line.startswith("cd "):
                folder, line = line[3:].split(" && ", 1)
                folder += "/"
            words = shlex.split(line)
            assert words[0] == sys.executable, line
            commands.append((folder + words[1], words[2:]))
        targets[target] = commands
    return targets


def stand_in_operations(commands: list[tuple[str, list[str]]]) -> None:
    """Write, for each ``--operations_path`` a target's shrink writes, the full space of that shrink (the upper
    bound of what it leaves): the target's later commands then parse as they will after the shrink."""
    for script, argv in commands:
        if script == "shrinking/main.py":
            space = argv[argv.index("--space") + 1] if "--space" in argv else "gpu"
            save = Path(argv[argv.index("--save") + 1])
            save.mkdir(parents=True, exist_ok=True)
            Operations.full(get_space(space)).save(save / "operations.json")


# -- measuring ---------------------------------------------------------------------------------------------------------
def short_flags(script: str, argv: list[str] | tuple[str, ...]) -> list[str]:
    """Flags that cut a demo's work to a part, every unit by a similar factor: what a measurement runs (its CPU
    seconds then scale with the planned work). Demos of a few steps run whole."""
    searcher, cfg = settings(script, argv)
    name = searcher.name if searcher is not None else Path(script).stem
    if script == "shrinking/main.py":
        return ["--max_rounds", str(min(3, cfg.resolved().max_rounds))]
    if name in ("spos", "fairnas", "rsps"):
        return ["--epochs", "1", "--max_epochs", "1"] + (["--population_num", "6"] if name == "rsps" else [])
    if name == "proxylessnas":
        return ["--n_epochs", "1"]
    if name == "pertnas":
        return ["--npop", "1"]
    if name == "train_from_scratch" and not cfg.eval:
        return ["--epochs", "2"]
    if name in ("angle_tau", "drop_ops", "search", "train_supernet"):
        return ["--epochs", "2", "--eval_epochs", "1,2", "--acc_archs", "6"] + (
            ["--max_epochs", "1"] if name == "search" else [])
    if name == "train_arch":
        return ["--epochs", "1"]
    if name == "standalone_tau":
        return ["--cells", "0"]
    return []


def measure(demo_id: str, script: str, argv: list[str], save: Path | None) -> dict:
    """Run one demo cut short (:func:`short_flags`; its run folder under ``save``) on one thread and return its CPU
    seconds (at least its wall time on 2 free cores, and unlike the wall time of a shared machine little changed
    by other jobs) and the work it planned."""
    argv = [*argv, *short_flags(script, argv)]
    work = plan(script, argv)
    extra = ["--threads", "1"] + ([] if save is None else ["--save", str(save)])
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / script), *argv, *extra], cwd=ROOT, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] if proc.returncode else []
    return {"id": demo_id, "seconds": round(cpu, 1), "wall": round(wall, 1), "work": work, "rc": proc.returncode,
            "tail": tail, "load": [round(load, 1), round(os.getloadavg()[0], 1)]}


def main(args: list[str]) -> None:
    if not args or args[0] != "--measure":
        for demo in DEMOS:
            print(f"{demo.id:<36} {plan(demo.script, demo.argv)}")
        return
    wanted = set(args[1:])
    with tempfile.TemporaryDirectory(prefix="demos-") as tmp:
        for demo in DEMOS:
            if not wanted or demo.id in wanted:
                print(json.dumps(measure(demo.id, demo.script, list(demo.argv), Path(tmp) / demo.id)), flush=True)
        for target, commands in makefile_commands(Path(tmp) / "make").items():
            if wanted and f"make-{target}" not in wanted:
                continue
            for i, (script, argv) in enumerate(commands):
                print(json.dumps(measure(f"make-{target}-{i}", script, argv, None)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
