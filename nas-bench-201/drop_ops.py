"""Experiment 4 on NAS-Bench-201: drop 20 of the 30 operators in one round by angle, supernet accuracy, magnitude
(the original's: the architecture weight alpha of a DARTS search on the NB201 space) and weight norm; report how
many of the ground-truth top-10 operators each keeps and whether the best cell survives.

    python nas-bench-201/drop_ops.py --demo --save DIR
    python nas-bench-201/drop_ops.py --dataset cifar10-jpg --data_dir cifar10-jpg.tar.gz --seeds 3 --save DIR

Trains the supernets first unless SAVE holds them (same settings), and per seed a DARTS-alpha supernet in
SAVE/seed-N/alpha (resumable); writes SAVE/drop.json.
"""

from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.nb201.experiments import Experiment
from anglenas.nb201.settings import DEMO, NB201Config


@cli
def main(argv=None) -> None:
    cfg = parse_config(NB201Config, argv, description=__doc__, prog="drop_ops.py", presets={"demo": DEMO})
    Experiment(cfg).drop_ops()


if __name__ == "__main__":
    main()
