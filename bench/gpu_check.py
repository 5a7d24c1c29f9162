"""Every GPU figure of the project in one prepared run (at most 8 minutes on one GPU).

    python bench/gpu_check.py --out runs/gpu-check --data_dir .data/cifar10-jpg.tar.gz      # one GPU
    python bench/gpu_check.py --out /tmp/check --device cpu --tiny                          # CPU, under 2 minutes

Writes OUT/gpu_check.json and OUT/gpu_check.md (device, torch / CUDA versions, every figure with its setting),
rewritten after every figure, so a run cut short keeps what it has. Sections, each with its own time cap; a section
that fails or reaches its cap is reported and the next one runs:

1. smoke      every stage at a tiny size on the device: shrink (each registered space), search (in-process
              evaluation, and one RabbitMQ test server when a broker answers at 127.0.0.1:5672), train, eval,
              NB201, every registered searcher (entry points with --demo and tiny flags; subprocesses on CUDA)
2. supernet   supernet training img/s (GPU space, width 1, 224x224, batch 128 and 256, random path per step,
              every op warmed up): the original's loop against ours, then each speed lever of bench_supernet.py
3. abs        one ABS round at paper size (angles of ~17,900 children) against the original's method (a float32
              vector per child) timed on a sample and extrapolated
4. train_data final-training img/s of SPOS_ABS at batch 256 against a plain fp32 loop; ImageNet-size JPEG
              loading img/s with worker decoding and device decoding
5. nb201_tau  the rest of the budget: SPOS supernet on NB201 (CIFAR-10 from --data_dir), Kendall tau of the
              angle against NB201 CIFAR-10 after each epoch, with the original's optimiser semantics
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import platform
import re
import runpy
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

from common import device_name, direct_angles, final_train_rate, report_variants, sync

from anglenas.checkpoint import atomic_write_text

EXPECTED_SEARCHERS = ("spos", "fairnas", "proxylessnas", "darts", "pdarts", "pertnas")
BROKER = ("127.0.0.1", 5672)


class TimeCap(BaseException):
    """A time cap was reached (a BaseException, so that no ``except Exception`` of the code under test eats it)."""


class Caps:
    """Nested wall-clock caps on the main thread (SIGALRM): ``with caps.cap(seconds, label)``."""

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
        live = [c[0] for c in self.stack if not c[2]]
        return min(live) - time.monotonic() if live else float("inf")

    @contextlib.contextmanager
    def cap(self, seconds: float, label: str):
        entry = [time.monotonic() + seconds, f"{label} ({seconds:.0f} s)", False]
        self.stack.append(entry)
        self._arm()
        try:
            yield entry
        finally:
            self.stack.remove(entry)
            self._arm()


@dataclass
class Check:
    """The run: settings, the report being filled and its files."""

    out: Path
    work: Path
    device: torch.device
    tiny: bool
    data_dir: str | None
    subprocesses: bool
    budget: float
    smoke_stages: list[str] = field(default_factory=list)
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

    # -- running entry points -----------------------------------------------------------------------------------
    def entry(self, script: str, argv: list[str], log: Path, timeout: float, term_grace: float = 0.0) -> str:
        """Run ``ROOT/script argv`` (a subprocess, or in-process with ``runpy``), output to ``log``; returns
        ``ok`` or ``failed: ...``. A subprocess gets ``timeout`` seconds (``term_grace`` > 0: SIGTERM first, so
        that it checkpoints)."""
        timeout = max(min(timeout, self.caps.remaining() - 2), 1)
        log.parent.mkdir(parents=True, exist_ok=True)
        if self.subprocesses:
            with open(log, "w") as f:
                proc = subprocess.Popen([sys.executable, str(ROOT / script), *argv], cwd=ROOT, stdout=f,
                                        stderr=subprocess.STDOUT)
                try:
                    code = proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    if term_grace:
                        proc.send_signal(signal.SIGTERM)
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            proc.wait(timeout=term_grace)
                    return f"failed: stopped at its time cap of {timeout:.0f} s"
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
        else:
            code = 0
            threads = torch.get_num_threads()
            with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f), \
                    self.caps.cap(timeout, script) as mine:
                saved, sys.argv = sys.argv, [str(ROOT / script), *argv]
                try:
                    runpy.run_path(str(ROOT / script), run_name="__main__")
                except TimeCap as exc:
                    if exc.args[1] is not mine:
                        raise
                    return f"failed: stopped at its time cap of {timeout:.0f} s"
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                except Exception:  # noqa: BLE001  (reported as the stage's failure)
                    traceback.print_exc(file=f)
                    code = 1
                finally:
                    sys.argv = saved
                    torch.set_num_threads(threads)
        if code == 0:
            return "ok"
        return f"failed: exit {code}: " + " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])[-400:]

    def help_flags(self, script: str) -> set[str]:
        """The ``--flags`` that ``script --help`` lists (read at run time)."""
        log = self.work / "logs" / (Path(script).stem + "-help.txt")
        self.entry(script, ["--help"], log, 120)
        return set(re.findall(r"(--[A-Za-z0-9_-]+)", log.read_text(errors="replace")))


def markdown(report: dict) -> str:
    """The human-readable report: header, then one block per section (figures as tables)."""
    lines = ["# GPU check", "", f"- device: **{report['device']}**", f"- torch {report['torch']}, CUDA "
             f"{report['cuda']}, cuDNN {report['cudnn']}, Python {report['python']}, {report['host_cpus']} host CPUs",
             f"- started {report['started']}; wall {report.get('wall_seconds', 0)} s; tiny: {report['tiny']}"]
    if "gpu_memory_gib" in report:
        lines.append(f"- {report['gpu_memory_gib']} GiB, {report['multiprocessors']} multiprocessors")
    lines.append("")
    for key, sec in report["sections"].items():
        lines += [f"## {sec['title']}", "", f"status: **{sec['status']}** ({sec.get('seconds', 0)} s, cap "
                  f"{sec['cap_s']} s)", ""]
        if sec.get("setting"):
            lines += [f"setting: {sec['setting']}", ""]
        for name, table in sec.get("tables", {}).items():
            rows = list(table.items())
            if not rows:
                continue
            cols = sorted({c for _, r in rows if isinstance(r, dict) for c in r})
            lines += [f"**{name}**", "", "| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
            for row, values in rows:
                values = values if isinstance(values, dict) else {"value": values}
                lines.append(f"| {row} | " + " | ".join(str(values.get(c, "")) for c in cols) + " |")
            lines.append("")
        for k, v in sec.get("figures", {}).items():
            lines.append(f"- {k}: {v}")
        lines.append("")
    return "\n".join(lines)


# -- section 1: smoke ------------------------------------------------------------------------------------------
def broker_reachable() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(BROKER, timeout=2):
        return True
    return False


def smoke(check: Check, sec: dict) -> None:
    from anglenas.operations import Operations
    from anglenas.searchers.registry import get_searcher, searcher_names
    from anglenas.spaces import get_space, space_names

    get_searcher("spos")  # loads the built-in searchers
    sec["setting"] = (f"each entry point with --demo --device {check.dev} and tiny flags (logs in "
                      f"{check.work / 'logs'}), {'a subprocess' if check.subprocesses else 'in-process'}, 90 s cap each")
    stages = sec["tables"].setdefault("stages", {})
    d, smoke_dir = check.dev, check.work / "smoke"
    stage_cap = 90
    tiny_shrink = ["--warmup_epochs", "0"] if check.tiny else []  # a growing supernet's 11 warm-up stages

    def run(name: str, script: str, argv: list[str]) -> str:
        if not check.selected(name):
            stages[name] = {"status": "skipped: not selected by --smoke_stages"}
            return "skipped"
        t0 = time.perf_counter()
        stages[name] = {"status": "failed: the section's time cap came during this stage"}
        status = check.entry(script, [*argv, "--device", d], check.work / "logs" / f"{name}.txt", stage_cap)
        stages[name] = {"status": status, "seconds": round(time.perf_counter() - t0, 1)}
        check.write()
        return status

    registered = searcher_names()
    searchers = sorted(set(EXPECTED_SEARCHERS) | set(registered))
    planned = [f"shrink {s}" for s in space_names()] + [
        "search (in-process evaluation)", "search (1 RabbitMQ test server)", "train", "eval", "nb201 angle tau",
        *(f"searcher {n}" for n in searchers)]
    stages.update({name: {"status": "not reached: the section's time cap came first"} for name in planned})
    for space in space_names():
        run(f"shrink {space}", "shrinking/main.py",
            ["--demo", "--space", space, "--first_stage_epochs", "1", "--other_stage_epochs", "1", "--max_rounds", "1",
             "--sample_num", "2", "--search_val_size", "1936", "--batch_size", "32", "--stop_threshold", "0",
             *tiny_shrink, "--save", str(smoke_dir / f"shrink-{space}")])
    gpu_ops = smoke_dir / "shrink-gpu" / "operations.json"
    if not gpu_ops.exists():
        Operations.full(get_space("gpu")).save(gpu_ops)
    fair_ops = smoke_dir / "fairnas-operations.json"
    Operations.full(get_space("fairnas")).save(fair_ops)
    search = ["--dataset", "embedded", "--search_val_size", "1936", "--width_mult", "0.25", "--stem_stride", "2",
              "--batch_size", "32", "--epochs", "1", "--bn_images", "32", "--bn_batch_size", "32", "--val_images",
              "32", "--population_num", "2", "--select_num", "1", "--crossover_num", "0", "--mutation_num", "1",
              "--max_epochs", "1", "--topk", "1", "--workers", "0", "--eval_threads", "1"]
    run("search (in-process evaluation)", "searching/main.py",
        [*search, "--operations_path", str(gpu_ops), "--save", str(smoke_dir / "search")])
    smoke_rabbitmq(check, stages, search, gpu_ops, smoke_dir, stage_cap)
    run("train", "training/train_from_scratch.py",
        ["--demo", "--arch", "SPOS_ABS", "--epochs", "0.05", "--eval_limit", "16", "--eval_batch_size", "16",
         "--save", str(smoke_dir / "train")])
    run("eval", "training/train_from_scratch.py",
        ["--demo", "--eval", "--eval-resume", str(smoke_dir / "train" / "checkpoint.pt"), "--eval_limit", "16",
         "--eval_batch_size", "16"])
    run("nb201 angle tau", "nas-bench-201/angle_tau.py", [*nb201_tiny(), "--save", str(smoke_dir / "nb201")])
    recipes = {
        "spos": ("searching/main.py", [*search, "--operations_path", str(gpu_ops)], "--save"),
        "fairnas": ("searching/main.py", [*search, "--method", "fairnas", "--operations_path", str(fair_ops)],
                    "--save"),
        "proxylessnas": ("searching/imagenet_arch_search.py",
                         ["--demo", "--operations_path", str(gpu_ops), "--warmup_epochs", "1", "--n_epochs", "1", "--val_images", "32",
                          "--search_val_size", "1936", "--train_batch_size", "32", "--grad_data_batch", "32"], "--path"),
        "darts": ("darts-master/train_search.py", ["--demo", "--epochs", "1", "--steps_per_epoch", "1",
                                                   "--eval_limit", "8"], "--save"),
        "pdarts": ("pdarts-master/train_search.py", ["--demo", "--steps_per_epoch", "1", "--eval_limit", "8"],
                   "--save"),
        "pertnas": ("darts-master/search_evolutionary.py",
                    ["--demo", "--npop", "1", "--layers", "2", "--batch_size", "8", "--steps_per_epoch", "1",
                     "--val_size", "16", "--fine_extra_steps", "0", "--topology_extra_steps", "0"], "--save"),
    }
    for name in searchers:
        label = f"searcher {name}"
        if name not in registered:
            stages[label] = {"status": "not present (not registered in anglenas.searchers.registry)"}
        elif name not in recipes:  # the searcher's own --demo preset through a generic entry point
            run(label, str(generic_entry(check.work, name)),
                ["--demo", "--save", str(smoke_dir / f"searcher-{name}")])
        else:
            script, argv, save_flag = recipes[name]
            run(label, script, [*argv, save_flag, str(smoke_dir / f"searcher-{name}")])
    failed = [k for k, v in stages.items() if v["status"].startswith("failed")]
    sec["figures"]["stages failed"] = ", ".join(failed) or "none"
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(stages)} stages failed: {', '.join(failed)}")


GENERIC_ENTRY = """# written by bench/gpu_check.py: searcher {name!r} with its module's DEMO preset
import importlib, sys
from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.searchers.registry import get_searcher
searcher = get_searcher({name!r})
demo = getattr(importlib.import_module(searcher.run.__module__), "DEMO", {{}})
cli(lambda: searcher.run(parse_config(searcher.config, sys.argv[1:], presets={{"demo": demo}})))()
"""


def generic_entry(work: Path, name: str) -> Path:
    """An entry-point script for a registered searcher without a recipe here: its config, its module's DEMO."""
    path = work / f"searcher_{name}.py"
    path.write_text(GENERIC_ENTRY.format(name=name))
    return path


def nb201_tiny() -> list[str]:
    return ["--demo", "--channels", "4", "--cells_per_stage", "1", "--epochs", "1", "--eval_epochs", "1",
            "--batch_size", "64", "--acc_archs", "2", "--rebn_images", "32", "--eval_images", "32",
            "--eval_batch_size", "32"]


def smoke_rabbitmq(check: Check, stages: dict, search: list[str], ops: Path, smoke_dir: Path,
                   stage_cap: float) -> None:
    """The search with one ``searching/test_server.py`` (always a subprocess) through the local broker."""
    label = "search (1 RabbitMQ test server)"
    if not check.selected(label):
        stages[label] = {"status": "skipped: not selected by --smoke_stages"}
        return
    if not broker_reachable():
        stages[label] = {"status": "skipped: no RabbitMQ broker answers at 127.0.0.1:5672"}
        return
    tag = uuid.uuid4().hex[:8]
    queues = {"--request_queue": f"gpucheck_req_{tag}", "--result_queue": f"gpucheck_res_{tag}",
              "--dead_letter_queue": f"gpucheck_dead_{tag}"}
    qflags = [x for kv in queues.items() for x in kv]
    log = check.work / "logs" / "test-server.txt"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        server = subprocess.Popen([sys.executable, str(ROOT / "searching" / "test_server.py"), "--demo",
                                   "--device", check.dev, "--threads", "1", "--weights_wait", "1",
                                   "--search_val_size", "1936", *qflags], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    try:
        status = check.entry("searching/main.py", [*search, "--operations_path", str(ops), "--backend", "rabbitmq",
                                                   *qflags, "--device", check.dev, "--save",
                                                   str(smoke_dir / "search-mq")],
                             check.work / "logs" / "search-mq.txt", stage_cap)
        served = log.read_text(errors="replace").count("evaluating ")
        stages[label] = {"status": status, "seconds": round(time.perf_counter() - t0, 1),
                         "evaluations by the server": served}
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        delete_queues(list(queues.values()))
    check.write()


def delete_queues(names: list[str]) -> None:
    with contextlib.suppress(Exception):
        import pika

        conn = pika.BlockingConnection(pika.ConnectionParameters(*BROKER, connection_attempts=1))
        channel = conn.channel()
        for name in names:
            with contextlib.suppress(Exception):
                channel.queue_delete(name)
        conn.close()


# -- section 2: supernet training ------------------------------------------------------------------------------
def supernet(check: Check, sec: dict) -> None:
    from bench_supernet import VARIANTS, measure

    if check.tiny:
        size, width, steps, warmup, batches = 16, 0.1, 1, 0, (2, 4)
        levers = ["bf16-cl-fused", "bf16-cl-hostdata"]
    else:
        size, width, steps, warmup, batches = 224, 1.0, 25, 3, (128, 256)
        levers = [v for v in VARIANTS if v not in ("original", "bf16-cl")]
    sec["setting"] = (f"GPU space, width {width}, {size}x{size}, random data, a random path per step "
                      f"(UniformPathSampler seed 0); every op run once, then {warmup} warm-up and {steps} timed steps")
    # compilation last: it may take the rest of the section's time
    order = ([(batches[0], v) for v in ["original", "bf16-cl", *levers] if not v.endswith("compile")]
             + [(batches[1], v) for v in ("original", "bf16-cl")] + [(batches[0], v) for v in levers
                                                                        if v.endswith("compile")])
    for batch, variant in order:
        table = sec["tables"].setdefault(f"batch {batch}", {})
        result = report_variants([variant], lambda v: measure(v, batch, size, width, steps, warmup, check.device))
        result[variant].pop("ratio", None)  # measured alone: the ratio to the original is the next column
        table[variant] = result[variant]
        if "img_per_s" in result[variant] and "img_per_s" in table.get("original", {}):
            table[variant]["x original"] = round(result[variant]["img_per_s"] / table["original"]["img_per_s"], 2)
        check.write()


# -- section 3: one ABS round ----------------------------------------------------------------------------------
def abs_round(check: Check, sec: dict) -> None:
    from anglenas.abs.angle import ArchAngles, snapshot
    from anglenas.abs.candidates import CandidateSampler
    from anglenas.abs.scoring import score_operators
    from anglenas.spaces import get_space, reference_table

    width, sample_num, direct_n = (0.25, 5, 3) if check.tiny else (1.0, 1000, 100)
    space = get_space("gpu").scaled(width) if width != 1.0 else get_space("gpu")
    torch.manual_seed(0)
    model = space.supernet().to(check.device)
    base = snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ops = space.initial_operations()
    sec["setting"] = (f"GPU space width {width} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M supernet "
                      f"params), {sum(len(l) for l in ops if len(l) > 1)} operators x {sample_num} children, FLOPs <= "
                      f"600M; weights W = W0 + 0.01 N(0, 1)")
    figures = sec["figures"]
    timings: dict[str, float] = {}

    def angles(archs: np.ndarray) -> torch.Tensor:
        sync(check.device)
        t0 = time.perf_counter()
        engine = ArchAngles(model, base, space)
        sync(check.device)
        t1 = time.perf_counter()
        theta = engine.angles(archs)
        sync(check.device)
        timings["block statistics s"], timings["angles of all children s"] = t1 - t0, time.perf_counter() - t1
        return theta

    sampler = CandidateSampler(space, ops, np.random.default_rng(0), flops=reference_table("gpu"), max_flops=600e6)
    t0 = time.perf_counter()
    _, children = score_operators(ops, sampler, angles, sample_num)
    total = time.perf_counter() - t0
    figures["children scored"] = len(children)
    figures.update({k: round(v, 4) for k, v in timings.items()})
    figures["candidate sampling s"] = round(total - sum(timings.values()), 3)
    figures["whole round s"] = round(total, 3)
    check.write()
    sample = children[:direct_n]
    sync(check.device)
    t0 = time.perf_counter()
    direct = direct_angles(model, base, sample)
    sync(check.device)
    per_child = (time.perf_counter() - t0) / len(sample)
    figures["original's method ms per child"] = round(per_child * 1e3, 2)
    figures[f"original's method s per round (extrapolated from {len(sample)} children)"] = \
        round(per_child * len(children), 1)
    figures["speed-up of the whole round"] = round(per_child * len(children) / total, 1)
    exact = ArchAngles(model, base, space).angles(sample).cpu()
    figures["max |float32 direct - float64 block| rad"] = f"{(direct.double().cpu() - exact).abs().max().item():.1e}"


# -- section 4: final training and data loading ----------------------------------------------------------------
def train_data(check: Check, sec: dict) -> None:
    from bench_data import make_folder, rate

    from anglenas.data import DataConfig, build_data

    if check.tiny:
        batch, size, width, steps, warmup = 4, 32, 0.25, 1, 0
        images, data_batch, data_steps, workers = 20, 4, 2, [0]
    else:
        batch, size, width, steps, warmup = 256, 224, 1.0, 20, 5
        images, data_batch, data_steps, workers = 1200, 128, 8, [8, 16]
    sec["setting"] = (f"SPOS_ABS, batch {batch}, {size}x{size}, width {width}, random data, {warmup} warm-up + "
                      f"{steps} timed steps; data: ImageFolder of {images} synthetic 500x375 JPEGs, batch {data_batch}, "
                      f"{data_steps} timed batches")
    table = sec["tables"].setdefault("final training img/s", {})
    for variant in ("plain-fp32", "bf16-cl"):
        table[variant] = report_variants([variant], lambda v: final_train_rate(v, "SPOS_ABS", batch, size, width,
                                                                               steps, warmup, check.device))[variant]
        table[variant].pop("ratio", None)
        check.write()
    if "img_per_s" in table["plain-fp32"] and "img_per_s" in table["bf16-cl"]:
        sec["figures"]["ours / plain fp32"] = round(table["bf16-cl"]["img_per_s"] / table["plain-fp32"]["img_per_s"], 2)
    data = sec["tables"].setdefault("JPEG loading img/s", {})
    folder = check.work / "jpegs"
    if not folder.exists():
        make_folder(folder, 10, images // 10)
    for decode, counts in (("workers", workers), ("device", workers[-1:])):
        for n in counts:
            cfg = DataConfig(dataset="imagenet", train_dir=str(folder), search_val_size=10, workers=n, decode=decode)
            key = f"decode on {decode}, {n} workers"
            try:
                stream = build_data(cfg, check.device).train_stream(data_batch, seed=0, channels_last=True)
                data[key] = {"img_per_s": round(rate(stream, data_steps, check.device), 1)}
            except Exception as exc:  # noqa: BLE001
                data[key] = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
            check.write()


# -- section 5: NB201 tau --------------------------------------------------------------------------------------
def nb201_tau(check: Check, sec: dict) -> None:
    script = "nas-bench-201/angle_tau.py"
    save = check.work / "nb201-tau"
    if check.tiny:
        argv = nb201_tiny()
    else:
        data = (["--dataset", "cifar10-jpg", "--data_dir", check.data_dir] if check.data_dir
                else ["--dataset", "embedded-12k"])
        epochs = 30  # NB201Config's one-GPU schedule; the run is stopped at the cap and keeps the epochs done
        argv = [*data, "--epochs", str(epochs), "--eval_epochs", ",".join(map(str, range(1, epochs + 1))),
                "--seeds", "1", "--acc_archs", "0"]
    argv += ["--optimizer_semantics", "original", "--device", check.dev, "--save", str(save)]
    known = check.help_flags(script)
    wanted = [a for a in argv if a.startswith("--")]
    missing = [a for a in wanted if a not in known]
    if missing:  # a flag the entry point does not have (another helper changed it): run without, and say so
        sec["figures"]["flags not in --help, left out"] = " ".join(missing)
        argv = drop_flags(argv, missing)
    sec["setting"] = f"{script} {' '.join(argv)}"
    t0 = time.perf_counter()
    reserve = 35 if check.subprocesses else 2  # SIGTERM grace (the run checkpoints) and reading the results
    status = check.entry(script, argv, check.work / "logs" / "nb201-tau.txt", check.caps.remaining() - reserve,
                         term_grace=20)
    sec["figures"]["run"] = status if status == "ok" else status + " (the epochs done before it are below)"
    sec["figures"]["seconds"] = round(time.perf_counter() - t0, 1)
    taus = epoch_taus(save)
    if not taus:
        raise RuntimeError(f"no epoch finished ({status})")
    sec["tables"]["tau vs NB201 CIFAR-10 per epoch"] = taus


def drop_flags(argv: list[str], flags: list[str]) -> list[str]:
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


# -- the run ---------------------------------------------------------------------------------------------------
SECTIONS: list[tuple[str, str, float, float, Callable[[Check, dict], None]]] = [
    # key, title, share of the budget on the GPU, share with --tiny, function (the last one takes what is left)
    ("smoke", "1. CUDA smoke of every stage", 150, 40, smoke),
    ("supernet", "2. Supernet training img/s", 110, 15, supernet),
    ("abs", "3. One ABS round", 40, 10, abs_round),
    ("train_data", "4. Final training and data loading img/s", 60, 15, train_data),
    ("nb201_tau", "5. NB201 tau with the rest of the budget", 110, 20, nb201_tau),
]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder of gpu_check.json / gpu_check.md")
    parser.add_argument("--work", help="folder of the stages' runs and logs (default OUT/work)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="every section at a tiny size (the CPU test)")
    parser.add_argument("--data_dir", help="cifar10-jpg.tar.gz for the NB201 section")
    parser.add_argument("--budget", type=float, default=None,
                        help="wall seconds in all, shared by the sections (default 470; with --tiny 85)")
    parser.add_argument("--sections", default=",".join(s[0] for s in SECTIONS), help="comma-separated subset")
    parser.add_argument("--smoke_stages", default="",
                        help="comma-separated starts of the smoke stages to run (default: every stage), e.g. "
                             "'train,eval,nb201,searcher' to rerun those")
    parser.add_argument("--subprocesses", choices=("auto", "yes", "no"), default="auto",
                        help="entry points as subprocesses (auto: on CUDA) or in-process")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no GPU; use --device cpu --tiny")
    if args.data_dir and not Path(args.data_dir).is_file():
        parser.error(f"--data_dir {args.data_dir} is not a file; give the cifar10-jpg.tar.gz tarball")
    device = torch.device(args.device)
    budget = args.budget or (85.0 if args.tiny else 470.0)
    check = Check(Path(args.out), Path(args.work or Path(args.out) / "work"), device, args.tiny, args.data_dir,
                  args.subprocesses == "yes" or (args.subprocesses == "auto" and device.type == "cuda"), budget,
                  [p for p in args.smoke_stages.split(",") if p])
    chosen = [s for s in SECTIONS if s[0] in args.sections.split(",")]
    shares = [s[3] if args.tiny else s[2] for s in chosen]
    check.report["budget_s"] = budget
    for i, (key, title, _, _, run) in enumerate(chosen):
        left = budget - check.elapsed() - 3
        cap = left if i == len(chosen) - 1 else min(left, budget * shares[i] / sum(shares))
        sec = check.report["sections"][key] = {"title": title, "status": "running", "cap_s": round(cap),
                                               "tables": {}, "figures": {}}
        check.write()
        t0 = time.perf_counter()
        if cap < 3:
            sec["status"] = "skipped: no time left in the budget"
        else:
            try:
                with check.caps.cap(cap, f"section {key}"):
                    run(check, sec)
                sec["status"] = "ok"
            except TimeCap as exc:
                sec["status"] = f"failed: {exc.args[0]}; the figures taken before it are kept"
            except Exception as exc:  # noqa: BLE001  (a failing section is reported, the next one runs)
                sec["status"] = f"failed: {type(exc).__name__}: {exc}"[:500]
                sec["traceback"] = traceback.format_exc()[-2000:]
        sec["seconds"] = round(time.perf_counter() - t0, 1)
        if device.type == "cuda":
            sec["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        check.write()
        print(f"[gpu_check {check.elapsed():5.0f}s] {title}: {sec['status']}", flush=True)
    return check.report


if __name__ == "__main__":
    main()
