"""DARTS search on CIFAR-10 in the (ABS-shrunk) DARTS space; writes SAVE/genotype.json.

    python train_search.py --data DIR --unrolled --save DARTS_ABS --operations_path FILE
    python train_search.py --demo --operations_path FILE --save DIR      # CPU demo on the embedded data

--data is the folder holding cifar-10-batches-py/ or the cifar10-jpg tarball. --operations_path takes the
operations.json of shrinking/main.py --space darts, or the original's pickle; without it the full 8-op space is
searched. Run the same command again to resume a killed run.
"""
from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.searchers.darts.search import DEMO, DartsConfig, run_darts


@cli
def main() -> None:
    run_darts(parse_config(DartsConfig, description=__doc__, presets={"demo": DEMO}))


if __name__ == "__main__":
    main()
