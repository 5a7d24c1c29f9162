"""Experiment 1 on NAS-Bench-201: train SPOS supernets (each cell samples its own path), keeping the weights at
initialisation and at every --eval_epochs epoch in SAVE/seed-N/weights-epoch-E.pt (angles ranked on the way).

    python nas-bench-201/train_supernet.py --dataset cifar10-jpg --data_dir cifar10-jpg.tar.gz --save DIR

The other NB201 scripts given the same --save and settings reuse these supernets; run again to resume.
"""

from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.nb201.experiments import Experiment
from anglenas.nb201.settings import DEMO, NB201Config


@cli
def main(argv=None) -> None:
    cfg = parse_config(NB201Config, argv, description=__doc__, prog="train_supernet.py", presets={"demo": DEMO})
    for _ in Experiment(cfg).runs():
        pass


if __name__ == "__main__":
    main()
