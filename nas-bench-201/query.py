"""Ground truth of one NAS-Bench-201 cell: ``python nas-bench-201/query.py --arch "|nor_conv_3x3~0|+|...|"``.

Prints the NB201 index and the 200-epoch test accuracy on CIFAR-10, CIFAR-100 and ImageNet16-120
(``--index N`` looks an index up instead; ``--benchmark FILE`` reads an official NB201 / NATS-Bench file).
"""
from anglenas.config import parse_config
from anglenas.errors import cli
from anglenas.nb201.query import QueryConfig, query_report


@cli
def main(argv=None) -> None:
    print(query_report(parse_config(QueryConfig, argv, description=__doc__, prog="query.py")))


if __name__ == "__main__":
    main()
