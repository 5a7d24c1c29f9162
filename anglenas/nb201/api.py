"""A small NAS-Bench-201-like API over the ground truth: 200-epoch test accuracy of all 15,625 cells.

The default source is the table shipped with the package (``nats_bench.csv``, see README.md here); a user's
official benchmark file (NAS-Bench-201 ``NAS-Bench-201-v1_*.pth`` or NATS-Bench ``NATS-tss-v1_0-3ffb9-simple``)
is read through the optional ``nas_201_api`` / ``nats_bench`` packages and served through the same calls.
An architecture's index is its row in the benchmark, i.e. the benchmark's own order.

    api = Benchmark.load()
    i = api.query_index_by_arch("|nor_conv_3x3~0|+|...|")
    api.accuracy(i, "cifar10"), api.accuracy(api[i], "cifar100")
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

import numpy as np

from anglenas.errors import UserError
from anglenas.nb201 import space

TABLE = Path(__file__).with_name("nats_bench.csv")
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
_CSV_COLUMNS = {"cifar10": "CIFAR10TestAccuracy200Epochs", "cifar100": "CIFAR100TestAccuracy200Epochs",
                "ImageNet16-120": "ImageNetTestAccuracy200Epochs"}
_ALIASES = {"cifar10": "cifar10", "c10": "cifar10", "cifar100": "cifar100", "c100": "cifar100",
            "imagenet16-120": "ImageNet16-120", "imagenet16": "ImageNet16-120", "in16": "ImageNet16-120",
            "imagenet": "ImageNet16-120"}


def dataset_key(name: str) -> str:
    """The canonical dataset name (cifar10, cifar100, ImageNet16-120) of a user spelling."""
    key = _ALIASES.get(name.lower())
    if key is None:
        raise UserError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    return key


class Benchmark:
    """Arch strings and test accuracies (%) of every cell, in the benchmark's index order."""

    def __init__(self, arch_strs: list[str], accuracies: dict[str, np.ndarray], source: str) -> None:
        self.arch_strs, self.source = list(arch_strs), source
        self.acc = {k: np.asarray(v, dtype=np.float64) for k, v in accuracies.items()}
        self._index = {s: i for i, s in enumerate(self.arch_strs)}
        if len(self._index) != len(self.arch_strs):
            raise UserError(f"{source} lists some architecture twice")
        self.cells = np.array([space.parse(s) for s in self.arch_strs], dtype=np.int64)
        self._cell_index = {tuple(c): i for i, c in enumerate(self.cells.tolist())}

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None) -> "Benchmark":
        """The shipped table (``path`` None), a CSV in its format, or an official NB201 / NATS-Bench file."""
        path = Path(path) if path else TABLE
        if not path.exists():
            raise UserError(f"benchmark file {path} does not exist")
        if path.suffix == ".csv":
            return cls.from_csv(path)
        return cls.from_official(path)

    @classmethod
    def from_csv(cls, path: str | Path) -> "Benchmark":
        try:
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise UserError(f"cannot read benchmark table {path}: {exc}") from None
        needed = ["ArchitectureString", *_CSV_COLUMNS.values()]
        if not rows or any(c not in rows[0] for c in needed):
            raise UserError(f"{path} is not a NATS-Bench table: it needs the columns {', '.join(needed)}")
        accs = {d: np.array([float(r[c]) for r in rows]) for d, c in _CSV_COLUMNS.items()}
        return cls([r["ArchitectureString"] for r in rows], accs, str(path))

    @classmethod
    def from_official(cls, path: str | Path) -> "Benchmark":
        """Read a NATS-Bench topology file (``nats_bench``) or a NAS-Bench-201 ``.pth`` (``nas_201_api``):
        200-epoch test accuracy, ``ori-test`` for CIFAR-10 and ``x-test`` otherwise, as the shipped table."""
        path = str(path)
        try:
            try:
                from nats_bench import create

                api, hp = create(path, "tss", fast_mode=True, verbose=False), "200"
            except ImportError:
                from nas_201_api import NASBench201API

                api, hp = NASBench201API(path, verbose=False), "200"
        except ImportError:
            raise UserError("reading an official benchmark file needs `pip install nats_bench` (NATS-Bench) or "
                            "`pip install nas-bench-201`; the shipped table needs neither") from None
        except Exception as exc:  # the official loaders raise assorted types for foreign files
            raise UserError(f"cannot read benchmark file {path}: {str(exc).splitlines()[0]}") from None
        try:
            strs = [api.arch(i) for i in range(len(api))]
            accs = {d: np.array([api.get_more_info(i, d, hp=hp, is_random=False)["test-accuracy"]
                                 for i in range(len(api))]) for d in DATASETS}
        except TypeError as exc:  # NAS-Bench-201 API < 2.0 has no `hp` argument
            raise UserError(f"the installed benchmark API is too old to read {path} ({exc}); "
                            f"`pip install -U nats_bench` or `nas-bench-201>=2.0`") from None
        return cls(strs, accs, path)

    # -- the NB201-like calls -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.arch_strs)

    def __iter__(self) -> Iterator[str]:
        return iter(self.arch_strs)

    def __getitem__(self, index: int) -> str:
        return self.arch_strs[self.check_index(index)]

    def check_index(self, index: int) -> int:
        if not 0 <= int(index) < len(self):
            raise UserError(f"architecture index {index} is out of range 0..{len(self) - 1}")
        return int(index)

    def query_index_by_arch(self, arch: str | tuple[int, ...]) -> int:
        """The benchmark index of an arch string (validated) or a cell tuple."""
        cell = space.parse(arch) if isinstance(arch, str) else tuple(int(x) for x in arch)
        space.check_cell(cell)
        return self._cell_index[cell]

    def accuracy(self, arch: int | str | tuple[int, ...], dataset: str = "cifar10") -> float:
        """Test accuracy (%) of an architecture given by index, arch string or cell tuple."""
        index = self.check_index(arch) if isinstance(arch, (int, np.integer)) else self.query_index_by_arch(arch)
        return float(self.accuracies(dataset)[index])

    def accuracies(self, dataset: str = "cifar10") -> np.ndarray:
        """Test accuracies (%) of all architectures in index order."""
        return self.acc[dataset_key(dataset)]

    def indices_of(self, cells: np.ndarray) -> np.ndarray:
        """Benchmark indices of cells [N, 6]."""
        return np.array([self._cell_index[tuple(c)] for c in np.asarray(cells).tolist()], dtype=np.int64)
