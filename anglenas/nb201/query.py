"""The ground truth of one NAS-Bench-201 cell: the settings and the report of ``nas-bench-201/query.py``."""
from __future__ import annotations

from dataclasses import dataclass

from anglenas.config import field
from anglenas.errors import UserError
from anglenas.nb201.api import DATASETS, Benchmark
from anglenas.spaces.nb201.cells import NUM_ARCHS


@dataclass
class QueryConfig:
    arch: str = field("", "NB201 arch string |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")
    index: int | None = field(None, "NB201 index (instead of --arch)", low=0, high=NUM_ARCHS - 1)
    benchmark: str = field("", "official NB201 / NATS-Bench file or CSV (default: the shipped table)")


def query_report(cfg: QueryConfig) -> str:
    """The index, arch string and 200-epoch test accuracy on each dataset of ``--arch`` or ``--index``."""
    if bool(cfg.arch) == (cfg.index is not None):
        raise UserError("give exactly one of --arch STRING or --index N")
    api = Benchmark.load(cfg.benchmark or None)
    index = api.index_of(cfg.arch or cfg.index)
    return "\n".join([f"index {index}  {api[index]}", *(f"{d:>15}: {api.accuracy(index, d):.2f}%" for d in DATASETS)])
