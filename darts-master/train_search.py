"""DARTS search on CIFAR-10 in the (ABS-shrunk) DARTS space; writes SAVE/genotype.json and SAVE/search_result.json.

    python train_search.py --data DIR --unrolled --save DARTS_ABS --operations_path FILE
    python train_search.py --demo --operations_path FILE --save DIR      # CPU demo on the embedded data

--data is the folder holding cifar-10-batches-py/ or the cifar10-jpg tarball. --operations_path takes the
operations.json of shrinking/main.py --space darts, or the original's pickle; without it the full 8-op space is
searched. Run the same command again to resume a killed run. This is `searching/main.py --searcher darts`, which
also searches the other spaces (--space nb201, gpu, ...).
"""
from anglenas.errors import cli
from anglenas.stages.search import parse_search, run_search


@cli
def main(argv=None) -> None:
    run_search(*parse_search(argv, "darts", __doc__, prog="train_search.py"))


if __name__ == "__main__":
    main()
