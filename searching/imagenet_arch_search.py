"""ProxylessNAS in a shrunk space (the original's ``ProxylessNAS/searching``):
``python imagenet_arch_search.py --path DIR --target_hardware flops --operations_path FILE --train_dir DIR
--test_dir DIR`` (``--demo`` for a CPU demo on the embedded data).

Warm-up on random paths, then binary-gate architecture search with the expected-FLOPs (or a user latency table)
term, in the operations file's space (``--space`` picks another with a relaxed supernet; default gpu). Writes
DIR/search_result.json, which ``training/train_from_scratch.py --arch DIR/search_result.json`` trains, and
DIR/arch_probabilities.png; run the same command again to resume after a stop. The same search is
``searching/main.py --searcher proxylessnas``.
"""
from anglenas.errors import cli
from anglenas.stages.search import parse_search, run_search


@cli
def main(argv=None) -> None:
    searcher, cfg = parse_search(argv, "proxylessnas", __doc__, prog="imagenet_arch_search.py")
    run_search(searcher, cfg)


if __name__ == "__main__":
    main()
