"""Every GPU figure of the project in one prepared run (at most 8 minutes on one GPU).

    python bench/gpu_check.py --out runs/gpu-check --data_dir .data/cifar10-jpg.tar.gz      # one GPU
    python bench/gpu_check.py --out /tmp/check --device cpu --tiny                          # CPU, about a minute

Writes OUT/gpu_check.json and OUT/gpu_check.md (device, torch / CUDA versions, every figure with its setting),
rewritten after every figure, so a run cut short keeps what it has. Sections, each with its own time cap; a section
that fails or reaches its cap is reported and the next one runs:

1. smoke      every stage at a tiny size on the device: shrink (each registered space), search (in-process
              evaluation, and one RabbitMQ test server when a broker answers at 127.0.0.1:5672), train, eval,
              NB201, every registered searcher through searching/main.py --searcher NAME --space NAME --demo on its
              home space and on nb201 (on CUDA: subprocesses, several at once)
2. supernet   supernet training img/s (GPU space, width 1, 224x224, batch 128 and 256, random path per step,
              every op warmed up): the original's loop against ours, then each speed lever of bench_supernet.py
3. abs        one ABS round at paper size (angles of ~17,900 children) against the original's method (a float32
              vector per child) timed on a sample and extrapolated
4. train_data final-training img/s of SPOS_ABS at batch 256 against a plain fp32 loop; ImageNet-size JPEG
              loading img/s with worker decoding and device decoding
5. bf16       fp32 vs bf16 autocast supernet training from the same weights, one ABS round on each: Kendall tau
              of the operator scores and operators dropped in common, beside an fp32 reseed (bf16_angle.py)
6. nb201_tau  the rest of the budget: SPOS supernet on NB201 (CIFAR-10 from --data_dir), Kendall tau of the
              angle against NB201 CIFAR-10 after each epoch, with the original's optimiser semantics

The parts live in bench/gpucheck/ (caps, the run and its report, one module per section).
"""
from __future__ import annotations

import argparse
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from gpucheck.abs_round import abs_round
from gpucheck.bf16 import bf16_angle
from gpucheck.caps import TimeCap
from gpucheck.check import Check
from gpucheck.nb201_tau import nb201_tau
from gpucheck.smoke import smoke
from gpucheck.supernet import supernet
from gpucheck.train_data import train_data

from anglenas.runtime import use_threads


@dataclass(frozen=True)
class Section:
    """A section: its key (``--sections``), title, shares of the budget on a GPU and with ``--tiny`` (of the time
    left when it starts, in proportion to the shares of the sections still to run: the last one takes what is left),
    and its function, which fills the section's tables and figures."""

    key: str
    title: str
    share: float
    tiny_share: float
    run: Callable[[Check, dict], None]


SECTIONS = [
    Section("smoke", "1. CUDA smoke of every stage", 130, 30, smoke),
    Section("supernet", "2. Supernet training img/s", 100, 8, supernet),
    Section("abs", "3. One ABS round", 35, 4, abs_round),
    Section("train_data", "4. Final training and data loading img/s", 55, 4, train_data),
    Section("bf16", "5. bf16 vs fp32: the angle's ranking and drops", 60, 6, bf16_angle),
    Section("nb201_tau", "6. NB201 tau with the rest of the budget", 90, 8, nb201_tau),
]
BUDGET, TINY_BUDGET = 470.0, 60.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder of gpu_check.json / gpu_check.md")
    parser.add_argument("--work", help="folder of the stages' runs and logs (default OUT/work)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="every section at a tiny size (the CPU test)")
    parser.add_argument("--data_dir", help="cifar10-jpg.tar.gz for the NB201 section")
    parser.add_argument("--budget", type=float, default=None, help=f"wall seconds in all, shared by the sections "
                        f"(default {BUDGET:.0f}; with --tiny {TINY_BUDGET:.0f})")
    parser.add_argument("--sections", default=",".join(s.key for s in SECTIONS), help="comma-separated subset")
    parser.add_argument("--smoke_stages", default="",
                        help="comma-separated starts of the smoke stages to run (default: every stage), e.g. "
                             "'train,eval,nb201,searcher' to rerun those")
    parser.add_argument("--subprocesses", choices=("auto", "yes", "no"), default="auto",
                        help="entry points as subprocesses (auto: on CUDA) or in-process")
    parser.add_argument("--smoke_parallel", type=int, default=0,
                        help="smoke stages run at once as subprocesses, each on its share of the cores (0: a "
                             "quarter of the cores, at most 4)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of this process and of each entry point (0: every core it may use; "
                             "default 1 with --tiny, else 0)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no GPU; use --device cpu --tiny")
    if args.data_dir and not Path(args.data_dir).is_file():
        parser.error(f"--data_dir {args.data_dir} is not a file; give the cifar10-jpg.tar.gz tarball")
    unknown = set(args.sections.split(",")) - {s.key for s in SECTIONS}
    if unknown:
        parser.error(f"--sections: no section {', '.join(sorted(unknown))}; the sections are "
                     f"{', '.join(s.key for s in SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    device = torch.device(args.device)
    subprocesses = args.subprocesses == "yes" or (args.subprocesses == "auto" and device.type == "cuda")
    threads = use_threads(1 if args.threads is None and args.tiny else args.threads or 0)
    parallel = (args.smoke_parallel or max(1, min(4, len(os.sched_getaffinity(0)) // 4))) if subprocesses else 1
    budget = args.budget or (TINY_BUDGET if args.tiny else BUDGET)
    check = Check(Path(args.out), Path(args.work or Path(args.out) / "work"), device, args.tiny, args.data_dir,
                  subprocesses, budget, [p for p in args.smoke_stages.split(",") if p],
                  threads=0 if subprocesses and parallel > 1 else threads, parallel=parallel)
    chosen = [s for s in SECTIONS if s.key in args.sections.split(",")]
    shares = [s.tiny_share if args.tiny else s.share for s in chosen]
    check.report.update(budget_s=budget, threads=threads)
    for i, section in enumerate(chosen):
        cap = (budget - check.elapsed() - 3) * shares[i] / sum(shares[i:])  # time a section leaves goes to the rest
        run_section(check, section, cap)
        print(f"[gpu_check {check.elapsed():5.0f}s] {section.title}: {check.report['sections'][section.key]['status']}",
              flush=True)
    return check.report


def run_section(check: Check, section: Section, cap: float) -> None:
    """Run one section within ``cap`` seconds; a failure or the cap is its status, never the run's end."""
    sec = check.report["sections"][section.key] = {"title": section.title, "status": "running", "cap_s": round(cap),
                                                   "tables": {}, "figures": {}}
    check.write()
    t0 = time.perf_counter()
    if cap < 3:
        sec["status"] = "skipped: no time left in the budget"
    else:
        mine: list = []
        try:
            with check.caps.cap(cap, f"section {section.key}") as mine:
                section.run(check, sec)
            sec["status"] = "ok"
        except (TimeCap, Exception) as exc:  # noqa: BLE001  (a failing section is reported, the next one runs)
            if mine[2]:  # its cap (code under test may have turned it into another error)
                sec["status"] = f"failed: time cap of {mine[1]} reached; the figures taken before it are kept"
            else:
                sec["status"] = f"failed: {type(exc).__name__}: {exc}"[:500]
                sec["traceback"] = traceback.format_exc()[-2000:]
    sec["seconds"] = round(time.perf_counter() - t0, 1)
    if check.device.type == "cuda":
        sec["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(check.device) / 2 ** 30, 2)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(check.device)
    check.write()


if __name__ == "__main__":
    main()
