"""PDARTS search on CIFAR-10 in the (ABS-shrunk) DARTS space; writes SAVE/genotype.json.

    python train_search.py --save PDARTS_ABS --tmp_data_dir DIR --operations_path FILE
    python train_search.py --demo --operations_path FILE --save DIR      # CPU demo on the embedded data

--tmp_data_dir is the folder holding cifar-10-batches-py/ or the cifar10-jpg tarball. With --operations_path (the
operations.json of shrinking/main.py --space darts, or the original's pickle) one 17-cell stage starts from the
file's ops; without it upstream's 3-stage schedule runs from all 8 ops. List flags (--add_layers, --dropout_rate,
...) take one comma-separated value per stage. Run the same command again to resume a killed run.
"""
from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.searchers.darts.pdarts import DEMO, PdartsConfig, run_pdarts


@cli
def main() -> None:
    run_pdarts(parse_config(PdartsConfig, description=__doc__, presets={"demo": DEMO}))


if __name__ == "__main__":
    main()
