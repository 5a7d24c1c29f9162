"""Experiment 5 on NAS-Bench-201: SPOS evolutionary search in the full space and in the ABS-shrunk space (the
operators the angle keeps), reporting the ground-truth accuracy of the cell each finds.

    python nas-bench-201/search.py --demo --save DIR
    python nas-bench-201/search.py --dataset cifar10-jpg --data_dir cifar10-jpg.tar.gz --seeds 3 --save DIR

Trains the supernets first unless SAVE holds them (same settings); writes SAVE/search.json; resumable.
"""
from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.nb201.experiments import Experiment
from anglenas.nb201.settings import SEARCH_DEMO, NB201SearchConfig


@cli
def main(argv=None) -> None:
    cfg = parse_config(NB201SearchConfig, argv, description=__doc__, prog="search.py", presets={"demo": SEARCH_DEMO})
    Experiment(cfg).search(cfg.evolution())


if __name__ == "__main__":
    main()
