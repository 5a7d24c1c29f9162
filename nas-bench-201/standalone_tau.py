"""The paper's stand-alone angle experiment on NAS-Bench-201 (the paper's Fig. 4):
``python nas-bench-201/standalone_tau.py --data_dir cifar10-jpg.tar.gz --save DIR``.

Trains the original's 50 cells (indices 0, 200, ..., 9800 of NB201's ``Structure.gen_all`` enumeration, mapped
to benchmark indices) from scratch, each into ``DIR/cell-NNNNN/`` (true initialisation, final weights, summary),
computes each one's angle between its initial and final weight vectors (the original's NB201 vector,
``get_arch_angle``), and reports Kendall tau-b of that angle against the benchmark's 200-epoch test accuracy and against
the accuracies the runs reached. The paper found tau = 0.833 (CIFAR-10), 0.822 (CIFAR-100), 0.825 (ImageNet16-120).

Defaults are the paper's CIFAR-10 settings (C=16, N=5, batch 512, SGD momentum 0.9 without Nesterov, lr 0.25
cosine to 0.001, weight decay 5e-4, 100 epochs). ``--cpu`` is the CPU preset (C=8, N=1, 16px, 5,000 training
images, 8 epochs: under a minute a cell on one core, 34 minutes for all 50 on a loaded 2-core machine);
``--demo`` runs five cells (one per op on edge 3<-0) for one epoch on the embedded mini set. Cells finish one
by one: a killed run, started again, keeps the finished cells and resumes the current one. Writes
``DIR/standalone_tau.json`` (after every cell) and ``DIR/standalone_angle.png``.
"""
from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.nb201.standalone import StandaloneTauConfig, run_standalone_tau

DEMO = {"dataset": "embedded", "channels": 4, "cells_per_stage": 1, "resolution": 16, "epochs": 1, "batch_size": 64,
        "lr": 0.05, "threads": 1, "cells": "0,200,400,600,800", "save": "runs/nb201-standalone-tau-demo"}
CPU = {"dataset": "cifar10-jpg", "channels": 8, "cells_per_stage": 1, "resolution": 16, "train_limit": 5000,
       "test_limit": 2000, "epochs": 8, "batch_size": 128, "lr": 0.1, "threads": 1,
       "save": "runs/nb201-standalone-tau-cpu"}


@cli
def main(argv=None) -> None:
    cfg = parse_config(StandaloneTauConfig, argv, description=__doc__, prog="standalone_tau.py",
                       presets={"demo": DEMO, "cpu": CPU})
    run_standalone_tau(cfg)


if __name__ == "__main__":
    main()
