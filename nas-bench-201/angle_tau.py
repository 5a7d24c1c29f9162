"""Experiments 1-3 on NAS-Bench-201: train SPOS supernets, rank all 15,625 architectures by angle, magnitude,
supernet accuracy (with / without BN recalibration) and random scores, and report Kendall tau vs the ground truth.

    python nas-bench-201/angle_tau.py --demo --save DIR        # CPU, embedded mini CIFAR-10, minutes
    python nas-bench-201/angle_tau.py --dataset cifar10-jpg --data_dir cifar10-jpg.tar.gz --seeds 3 --save DIR

Writes DIR/tau.json (metric -> tau), DIR/tau_table.json, DIR/tau.md and the figures; run again to resume.
"""

from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.nb201.experiments import Experiment
from anglenas.nb201.settings import DEMO, NB201Config


@cli
def main(argv=None) -> None:
    cfg = parse_config(NB201Config, argv, description=__doc__, prog="angle_tau.py", presets={"demo": DEMO})
    Experiment(cfg).angle_tau()


if __name__ == "__main__":
    main()
