"""PertNAS search on the DARTS space: expand an edge, then perturb-val (spec: shared/spec/pertnas-spec.md).

    torchrun --nproc_per_node=4 darts-master/search_evolutionary.py --seed 1 --save ./ --note evolutionary \
        --npop 4 --distributed --cluster local --train_path /data/cifar10     # N processes, 1 <= N <= npop
    python darts-master/search_evolutionary.py --demo                          # CPU, embedded mini CIFAR-10

Writes SAVE/search-NOTE/genotype.json (read by darts-master/train.py --arch FILE) and cell.png; run the same
command again to resume a killed search after its last finished decision.
"""
from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.searchers.pertnas.search import DEMO, PertNasConfig, run_pertnas


@cli
def main() -> None:
    run_pertnas(parse_config(PertNasConfig, description=__doc__, presets={"demo": DEMO}))


if __name__ == "__main__":
    main()
