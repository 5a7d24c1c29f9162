"""Ground truth of one NAS-Bench-201 cell: ``python nas-bench-201/query.py --arch "|nor_conv_3x3~0|+|...|"``.

Prints the NB201 index and the 200-epoch test accuracy on CIFAR-10, CIFAR-100 and ImageNet16-120
(``--index N`` looks an index up instead; ``--benchmark FILE`` reads an official NB201 / NATS-Bench file).
"""
from dataclasses import dataclass

from anglenas.config import field, parse_config
from anglenas.errors import UserError, cli
from anglenas.nb201.api import DATASETS, Benchmark


@dataclass
class QueryConfig:
    arch: str = field("", "NB201 arch string |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")
    index: int | None = field(None, "NB201 index (instead of --arch)")
    benchmark: str = field("", "official NB201 / NATS-Bench file or CSV (default: the shipped table)")


@cli
def main(argv=None) -> None:
    cfg = parse_config(QueryConfig, argv, description=__doc__, prog="query.py")
    if bool(cfg.arch) == (cfg.index is not None):
        raise UserError("give exactly one of --arch STRING or --index N")
    api = Benchmark.load(cfg.benchmark or None)
    index = api.query_index_by_arch(cfg.arch) if cfg.arch else api.check_index(cfg.index)
    print(f"index {index}  {api[index]}")
    for d in DATASETS:
        print(f"{d:>15}: {api.accuracy(index, d):.2f}%")


if __name__ == "__main__":
    main()
