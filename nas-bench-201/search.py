"""Experiment 5 on NAS-Bench-201: SPOS evolutionary search in the full space and in the ABS-shrunk space (the
operators the angle keeps), reporting the ground-truth accuracy of the cell each finds.

    python nas-bench-201/search.py --demo --save DIR
    python nas-bench-201/search.py --dataset cifar10-jpg --data_dir cifar10-jpg.tar.gz --seeds 3 --save DIR

Trains the supernets first unless SAVE holds them (same settings); writes SAVE/search.json; resumable.
"""
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anglenas.config import parse_config  # noqa: E402
from anglenas.errors import cli  # noqa: E402
from anglenas.nb201.experiments import DEMO, Experiment, NB201Config  # noqa: E402
from anglenas.search.evolution import EvolutionConfig  # noqa: E402


@dataclass
class SearchConfig(NB201Config, EvolutionConfig):
    """NB201 supernet settings plus the evolutionary search's."""


SEARCH_DEMO = {**DEMO, "population_num": 10, "select_num": 4, "crossover_num": 4, "mutation_num": 4,
               "max_epochs": 3, "rebn_images": 128, "eval_images": 128}


@cli
def main(argv=None) -> None:
    cfg = parse_config(SearchConfig, argv, description=__doc__, prog="search.py", presets={"demo": SEARCH_DEMO})
    evolution = EvolutionConfig(**{k: getattr(cfg, k) for k in EvolutionConfig.__dataclass_fields__})
    Experiment(cfg).search(evolution)


if __name__ == "__main__":
    main()
