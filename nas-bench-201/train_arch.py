"""Train one NAS-Bench-201 cell stand-alone:
``python nas-bench-201/train_arch.py --index 6111 --data_dir cifar10-jpg.tar.gz``.

By default this is NB201's own recipe at NB201's size (C=16, N=5; 200 epochs of SGD Nesterov, lr 0.1 cosine to 0,
weight decay 5e-4, batch 256, crop + flip) on all 50k CIFAR-10 training images, tested on the 10k test images;
``--epochs --channels --cells_per_stage --resolution --train_limit`` shrink it. ``--arch STRING`` instead of
``--index N`` names the cell by its arch string. ``--demo`` is a one-minute CPU run on the embedded mini set.

Writes into ``--save``: ``weights-init.pt`` (the true initialisation), ``weights-final.pt``, ``checkpoint.pt``
(after every epoch: run the same command again to resume a killed run), ``summary.json`` (reached top-1 next to
the benchmark's, angle between initial and final weights), ``log.txt``, ``config.yaml``, TensorBoard in ``tb/``.
"""
import json

from anglenas.checkpoint import check_writable
from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.log import RunLogger
from anglenas.nb201.api import Benchmark
from anglenas.nb201.standalone import StandaloneData, TrainArchConfig, cell_of, train_cell
from anglenas.runtime import pick_device, use_threads

DEMO = {"dataset": "embedded", "channels": 8, "cells_per_stage": 1, "resolution": 16, "epochs": 3, "batch_size": 64,
        "lr": 0.05, "threads": 1, "save": "runs/nb201-train-arch-demo"}


@cli
def main(argv=None) -> None:
    cfg = parse_config(TrainArchConfig, argv, description=__doc__, prog="train_arch.py", presets={"demo": DEMO})
    check_writable(cfg.save, "run folder", "--save")
    threads = use_threads(cfg.threads)
    bench = Benchmark.load(cfg.benchmark or None)
    cell, _ = cell_of(cfg.arch, cfg.index, bench)
    device = pick_device(cfg.device)
    data = StandaloneData(cfg, device)
    data.train_stream(cfg.batch_size, cfg.seed)  # refuses a batch larger than the training set
    logger = RunLogger(cfg.save)  # after the inputs are checked: none leaves a folder
    logger.info(f"training one cell on {device}, {threads} CPU thread(s)")
    summary = train_cell(cfg, cell, cfg.save, data, bench, device, logger)
    logger.close()
    print(json.dumps({k: summary[k] for k in ("arch", "benchmark_index", "top1", "benchmark_top1",
                                               "angle_init_final")}, indent=2))


if __name__ == "__main__":
    main()
