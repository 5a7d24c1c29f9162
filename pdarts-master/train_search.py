"""PDARTS search on CIFAR-10 in the (ABS-shrunk) DARTS space; writes SAVE/genotype.json and SAVE/search_result.json.

    python train_search.py --save PDARTS_ABS --tmp_data_dir DIR --operations_path FILE
    python train_search.py --demo --operations_path FILE --save DIR      # CPU demo on the embedded data

--tmp_data_dir (or --data) is the folder holding cifar-10-batches-py/ or the cifar10-jpg tarball. With
--operations_path (the operations.json of shrinking/main.py --space darts, or the original's pickle) one 17-cell
stage starts from the file's ops; without it upstream's 3-stage schedule runs from all 8 ops. List flags
(--add_layers, --dropout_rate, ...) take one comma-separated value per stage. Run the same command again to
resume a killed run. This is `searching/main.py --searcher pdarts`, which also searches the other spaces.
"""
from anglenas.errors import cli
from anglenas.searchers.darts.pdarts import DEMO
from anglenas.stages.search import parse_search, run_search


@cli
def main(argv=None) -> None:
    run_search(*parse_search(argv, "pdarts", __doc__, prog="train_search.py",
                             presets={"demo": {**DEMO, "init_channels": 4, "layers": 2}}))


if __name__ == "__main__":
    main()
