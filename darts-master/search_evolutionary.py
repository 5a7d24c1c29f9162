"""PertNAS search (the original's search_evolutionary.py): expand an edge, then perturb-val, on CIFAR-10.

    torchrun --nproc_per_node=4 darts-master/search_evolutionary.py --seed 1 --save ./ --note evolutionary \
        --npop 4 --distributed --cluster local --train_path /data/cifar10     # N processes, 1 <= N <= npop
    python darts-master/search_evolutionary.py --demo                          # CPU, embedded mini CIFAR-10
    python darts-master/search_evolutionary.py --space nb201 --demo            # any space with a relaxed supernet

The DARTS space by default (--space, or the space of --operations_path, picks another). Writes
SAVE/search-NOTE/search_result.json and, on the DARTS space, genotype.json (read by darts-master/train.py --arch
FILE) and cell.png; run the same command again to resume a killed search after its last finished decision.
--amp (on by default) is the original's fp16 autocast with a GradScaler on CUDA.
"""
from anglenas.errors import cli
from anglenas.stages.search import parse_search, run_search


@cli
def main(argv=None) -> None:
    run_search(*parse_search(argv, "pertnas", __doc__, prog="search_evolutionary.py"))


if __name__ == "__main__":
    main()
