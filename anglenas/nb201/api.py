"""A NAS-Bench-201 / NATS-Bench API over the ground truth: the calls NB201 and NATS-Bench users already write.

The default source is the table shipped with the package (``nats_bench.csv``, see README.md here): the
200-epoch test accuracy (mean over seeds) of all 15,625 cells on CIFAR-10 (``ori-test``), CIFAR-100 and
ImageNet16-120 (``x-test``). A user's official benchmark file (NAS-Bench-201 ``NAS-Bench-201-v1_*.pth`` or
NATS-Bench ``NATS-tss-v1_0-3ffb9-simple``) is read through the optional ``nas_201_api`` / ``nats_bench``
packages and answers the same calls with the official values. An architecture's index is its row in the
benchmark, i.e. the benchmark's own order. ``anglenas.nb201.create(None, 'tss')`` is NATS-Bench's ``create``.

    api = Benchmark.load()
    i = api.query_index_by_arch("|nor_conv_3x3~0|+|...|")   # -1 for a string that is no architecture
    api.get_more_info(i, "cifar10", hp="200")["test-accuracy"]
    api.query_meta_info_by_index(i).get_metrics("cifar100", "x-test")["accuracy"]
    api.get_cost_info(i, "cifar10")  # {'flops': M, 'params': MB, 'latency': None}, counted here
    api.find_best("cifar100", "test", flop_max=50)  # (index, accuracy)

Over the shipped table, what it does not hold (per-epoch curves, ``hp='12'``, single trials, train / valid
metrics, losses, ``cifar10-valid``) raises a :class:`UserError` that says an official file is needed.
``Benchmark.load(hp12=CSV)`` adds NB201's 12-epoch test and valid accuracies (``mini-bench-arch-cell-accs.hp12.csv``),
answered as ``hp='12'``. Defaults: ``hp='200'`` and ``is_random=False`` (the schedule and the mean the shipped
table holds; NATS-Bench defaults to ``hp='12'`` and a random trial).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from anglenas.errors import UserError
from anglenas.nb201.tables import (
    DATASETS,
    EPOCHS,
    OFFICIAL,
    SIZES,
    TABLE,
    TEST_SET,
    Metrics,
    OfficialArchResults,
    TableArchResults,
    TableInfo,
    dataset_key,
    hp_key,
    looks_official,
    read_hp12,
    read_table,
    remap_dataset_set_names,
    training_set,
)
from anglenas.spaces.nb201 import cells as space
from anglenas.spaces.nb201.network import cell_cost

__all__ = ["Benchmark", "DATASETS", "TABLE", "TableArchResults"]
_OFFICIAL_ONLY = ("query_by_index", "get_net_param", "reload", "statistics", "simulate_train_eval",
                  "get_latency", "clear_params")


class Benchmark:
    """Arch strings and test accuracies (%) of every cell, in the benchmark's index order; ``official`` is the
    official API object when the source is an official file (its calls then answer with official values)."""

    search_space_name = "topology"
    """NATS-Bench's name of this space (its size space, 'size', is not held here)."""

    def __init__(self, arch_strs: list[str], accuracies: dict[str, np.ndarray], source: str,
                 official: Any = None, unique_strs: list[str] | None = None) -> None:
        self.arch_strs, self.source, self.official = list(arch_strs), source, official
        self.unique_strs = unique_strs
        self.acc = {k: np.asarray(v, dtype=np.float64) for k, v in accuracies.items()}
        self.metrics: Metrics = {("200", d, TEST_SET[d]): a for d, a in self.acc.items()}
        """(hp, dataset, setname) -> accuracies (%) in index order: what the tables here hold."""
        self.archstr2index = {s: i for i, s in enumerate(self.arch_strs)}
        if len(self.archstr2index) != len(self.arch_strs):
            raise UserError(f"{source} lists some architecture twice")
        self.cells = np.array([space.parse(s) for s in self.arch_strs], dtype=np.int64)
        self._cell_index = {tuple(c): i for i, c in enumerate(self.cells.tolist())}
        self._costs: dict[str, np.ndarray] = {}

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
        elif not looks_official(path):
            raise UserError(f"{path} is not a benchmark file: give a CSV in the shipped format, a NAS-Bench-201 "
                            f"NAS-Bench-201-v1_*.pth or a NATS-Bench NATS-tss-v1_0-3ffb9-simple folder")
        else:
            bench = cls.from_official(path)
        if hp12:
            bench.add_hp12(hp12)
        return bench

    def add_hp12(self, path: str | Path) -> None:
        """Add NB201's 12-epoch (hp='12') test and valid accuracies from a CSV with the columns ``cellstr`` and
        :data:`~anglenas.nb201.tables.HP12_COLUMNS` (e.g. ``mini-bench-arch-cell-accs.hp12.csv``); rows are
        matched by arch string."""
        self.metrics.update(read_hp12(path, self.archstr2index))

    @classmethod
    def from_csv(cls, path: str | Path) -> "Benchmark":
        arch_strs, accs, unique_strs = read_table(path)
        return cls(arch_strs, accs, str(path), unique_strs=unique_strs)

    @classmethod
    def from_official(cls, path: str | Path) -> "Benchmark":
        """Read a NATS-Bench topology file or folder (``nats_bench``) or a NAS-Bench-201 ``.pth``
        (``nas_201_api``): 200-epoch test accuracy, ``ori-test`` for CIFAR-10 and ``x-test`` otherwise, as the
        shipped table."""
        path = str(path)
        try:
            try:
                from nats_bench import create

                api = create(path, "tss", fast_mode=Path(path).is_dir(), verbose=False)
            except ImportError:
                from nas_201_api import NASBench201API

                api = NASBench201API(path, verbose=False)
        except ImportError:
            raise UserError("reading an official benchmark file needs `pip install nats_bench` (NATS-Bench) or "
                            "`pip install nas-bench-201`; the shipped table needs neither") from None
        except Exception as exc:  # the official loaders raise assorted types for foreign files
            raise UserError(f"cannot read benchmark file {path}: {str(exc).splitlines()[0]}") from None
        try:
            strs = [api.arch(i) for i in range(len(api))]
            accs = {d: np.array([api.get_more_info(i, d, hp="200", is_random=False)["test-accuracy"]
                                 for i in range(len(api))]) for d in DATASETS}
        except TypeError as exc:  # NAS-Bench-201 API < 2.0 has no `hp` argument
            raise UserError(f"the installed benchmark API is too old to read {path} ({exc}); "
                            f"`pip install -U nats_bench` or `nas-bench-201>=2.0`") from None
        return cls(strs, accs, path, official=api)

    # -- indices and arch strings -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.arch_strs)

    def __iter__(self) -> Iterator[str]:
        return iter(self.arch_strs)

    def __getitem__(self, index: int) -> str:
        return self.arch_strs[self.check_index(index)]

    def __contains__(self, item: Any) -> bool:
        """True for an index in range and for an architecture (string, cell tuple) of the benchmark."""
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            return 0 <= item < len(self)
        return self.query_index_by_arch(item) >= 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)}/{len(self)} architectures, source={self.source})"

    @property
    def meta_archs(self) -> list[str]:
        """The arch string of every index (NATS-Bench's name)."""
        return self.arch_strs

    @property
    def evaluated_indexes(self) -> set[int]:
        """The indices with results: all of them."""
        return set(range(len(self)))

    @property
    def avaliable_hps(self) -> list[str]:
        """The training schedules the tables hold ('200', and '12' with the 12-epoch table; NATS-Bench's
        spelling)."""
        return sorted({h for h, _, _ in self.metrics}, key=int)

    def check_index(self, index: int) -> int:
        if not 0 <= int(index) < len(self):
            raise UserError(f"architecture index {index} is out of range 0..{len(self) - 1}")
        return int(index)

    def query_index_by_arch(self, arch: Any) -> int:
        """NATS-Bench's lookup: the index of an arch string, of an object with ``tostr()`` (NB201's
        ``Structure``) or of a cell tuple, and -1 when it is no architecture of the benchmark; an index is
        returned as it is (out of range: :class:`UserError`). :meth:`index_of` raises instead of -1."""
        if isinstance(arch, (int, np.integer)) and not isinstance(arch, bool):
            return self.check_index(arch)
        if hasattr(arch, "tostr"):
            arch = arch.tostr()
        if isinstance(arch, str):
            try:
                return self._cell_index.get(space.parse(arch), -1)
            except UserError:
                return -1
        try:
            return self._cell_index.get(tuple(int(op) for op in arch), -1)
        except (TypeError, ValueError):
            return -1

    def index_of(self, arch: int | str | tuple[int, ...]) -> int:
        """The index of an index, arch string or cell tuple; a :class:`UserError` naming what is wrong otherwise."""
        index = self.query_index_by_arch(arch)
        if index < 0:
            if isinstance(arch, str):
                space.parse(arch)  # raises, naming the malformed part
            raise UserError(f"{arch!r} is not an architecture of this benchmark: give an index, an arch string "
                            f"|op~0|+|op~0|op~1|+|op~0|op~1|op~2| or {space.NUM_EDGES} op ids in "
                            f"0..{len(space.OPS) - 1}")
        return index

    def accuracy(self, arch: int | str | tuple[int, ...], dataset: str = "cifar10") -> float:
        """Test accuracy (%) of an architecture given by index, arch string or cell tuple."""
        return float(self.accuracies(dataset)[self.index_of(arch)])

    def accuracies(self, dataset: str = "cifar10") -> np.ndarray:
        """Test accuracies (%) of all architectures in index order."""
        return self.acc[dataset_key(dataset)]

    def indices_of(self, cells: np.ndarray) -> np.ndarray:
        """Benchmark indices of cells [N, 6]."""
        return np.array([self._cell_index[tuple(c)] for c in np.asarray(cells).tolist()], dtype=np.int64)

    def arch(self, index: int) -> str:
        """The arch string of ``index``."""
        return self[index]

    def random(self) -> int:
        """A random index (NATS-Bench's ``random``: Python's ``random`` module)."""
        return random.randint(0, len(self) - 1)

    def get_unique_str(self, arch: int | str) -> str:
        """NATS-Bench's string shared by isomorphic cells (the table's ``UniqueString`` column)."""
        index = self.index_of(arch)
        if self.official is not None:
            return self.official.get_unique_str(index)
        if self.unique_strs is None:
            raise UserError(f"{self.source} has no UniqueString column; get_unique_str needs it or {OFFICIAL}")
        return self.unique_strs[index]

    # -- results ------------------------------------------------------------------------------------------------
    def get_more_info(self, index: int | str, dataset: str, iepoch: int | None = None, hp: str | int | bool = "200",
                      is_random: bool | int = False) -> dict:
        """NB201's summary of one run: a dict with ``test-accuracy`` (%), and ``valid-accuracy`` where the source
        has it (an official file also gives train / valid losses and times). ``hp`` True / False is NB201
        v1.0's ``use_12epochs_result``."""
        index, hp = self.index_of(index), hp_key(hp)
        if self.official is not None:
            return self.official.get_more_info(index, dataset, iepoch=iepoch, hp=hp, is_random=is_random)
        dataset = training_set(dataset)
        self._check_trial(hp, iepoch, is_random)
        found = {name: self.metrics.get((hp, dataset, setname)) for name, setname in (
            ("valid-accuracy", "x-valid"), ("test-accuracy", TEST_SET[dataset]))}
        info = TableInfo({name: float(values[index]) for name, values in found.items() if values is not None})
        if not info:
            self.table_value(index, dataset, TEST_SET[dataset], hp)  # raises, naming what the tables hold
        return info

    def table_values(self, dataset: str, setname: str, hp: str | int | bool = "200", iepoch: int | None = None,
                     is_random: bool | int = False) -> np.ndarray:
        """Accuracies (%) of every index trained on ``dataset`` and evaluated on ``setname`` from the tables here;
        a :class:`UserError` naming what they hold otherwise."""
        hp, dataset = hp_key(hp), training_set(dataset)
        self._check_trial(hp, iepoch, is_random)
        values = self.metrics.get((hp, dataset, setname))
        if values is None:
            held = ", ".join(f"{d} '{s}' (hp={h})" for h, d, s in self.metrics)
            raise UserError(f"the tables here hold {held}; {dataset} '{setname}' with hp='{hp}' needs {OFFICIAL}")
        return values

    def table_value(self, index: int, dataset: str, setname: str, hp: str | int | bool = "200",
                    iepoch: int | None = None, is_random: bool | int = False) -> float:
        """:meth:`table_values` of one index."""
        return float(self.table_values(dataset, setname, hp, iepoch, is_random)[self.check_index(index)])

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
        index, hp = self.index_of(index), hp_key(hp)
        if self.official is not None:
            return OfficialArchResults(self.official.query_meta_info_by_index(index, hp=hp))
        self._check_trial(hp, None, False)
        return TableArchResults(self, index, hp)

    def find_best(self, dataset: str, metric_on_set: str, flop_max: float | None = None,
                  param_max: float | None = None, hp: str | int | bool = "200", enforce_all: bool | None = None, *,
                  FLOP_max: float | None = None, Param_max: float | None = None) -> tuple[int, float | None]:
        """NATS-Bench's ``find_best``: (index, accuracy %) of the most accurate architecture on ``metric_on_set``
        ('test', 'valid' or a set name such as 'x-test') of ``dataset`` among those with at most ``flop_max`` M
        FLOPs and ``param_max`` MB params (NB201 spells them ``FLOP_max`` / ``Param_max``); the lowest index
        wins a tie; (-1, None) when none fits. ``enforce_all`` is accepted for NATS-Bench's signature: every
        architecture is evaluated here."""
        del enforce_all
        flop_max = FLOP_max if flop_max is None else flop_max
        param_max = Param_max if param_max is None else param_max
        hp = hp_key(hp)
        if self.official is not None:
            return self.official.find_best(dataset, metric_on_set, flop_max, param_max, hp)
        dataset, setname = remap_dataset_set_names(training_set(dataset), metric_on_set)
        accuracy = self.table_values(dataset, setname, hp)
        costs = self.costs(dataset)
        fits = np.ones(len(self), dtype=bool)
        for limit, column in ((flop_max, costs[:, 0]), (param_max, costs[:, 1])):
            if limit is not None:
                fits &= column <= limit
        if not fits.any():
            return -1, None
        best = int(np.argmax(np.where(fits, accuracy, -np.inf)))  # the first maximum
        return best, float(accuracy[best])

    # -- networks and costs -------------------------------------------------------------------------------------
    def get_net_config(self, index: int | str, dataset: str) -> dict:
        """NATS-Bench's config of the network of ``index`` trained on ``dataset``: {'name': 'infer.tiny', 'C',
        'N', 'arch_str', 'num_classes'}; :func:`anglenas.nb201.network_from_config` builds it."""
        index = self.index_of(index)
        if self.official is not None:
            return self.official.get_net_config(index, dataset)
        dataset = training_set(dataset)
        return {"name": "infer.tiny", "C": 16, "N": 5, "arch_str": self.arch_strs[index],
                "num_classes": SIZES[dataset][0]}

    def get_cost_info(self, index: int | str, dataset: str, hp: str | int | bool = "200") -> dict:
        """{'flops' (M), 'params' (MB), 'latency' (s)} of the network of ``index`` at NB201's size (C=16, N=5)
        trained on ``dataset``. Counted here (:func:`~anglenas.spaces.nb201.network.cell_cost`; latency None); over an
        official file the official values, with the counted ones added as ``counted-flops`` / ``counted-params``."""
        index = self.index_of(index)
        flops, params = cell_cost(tuple(self.cells[index]), *SIZES[training_set(dataset)])
        counted = {"flops": flops / 1e6, "params": params / 1e6}
        if self.official is None:
            return TableInfo(counted, latency=None)
        info = dict(self.official.query_meta_info_by_index(index, hp=hp_key(hp)).get_compute_costs(dataset))
        info.update({"counted-flops": counted["flops"], "counted-params": counted["params"]})
        return info

    def costs(self, dataset: str) -> np.ndarray:
        """[len, 2]: counted FLOPs (M) and params (MB) of every index's network trained on ``dataset``."""
        dataset = training_set(dataset)
        if dataset not in self._costs:
            self._costs[dataset] = np.array([cell_cost(tuple(c), *SIZES[dataset]) for c in self.cells.tolist()]) / 1e6
        return self._costs[dataset]

    # -- text ---------------------------------------------------------------------------------------------------
    def query_info_str_by_arch(self, arch: int | str, hp: str | int | bool = "200") -> str:
        """NATS-Bench's text on one architecture: its string, then per training set the costs and the accuracies
        the tables hold (what :meth:`show` prints)."""
        index, hp = self.index_of(arch), hp_key(hp)
        if self.official is not None:
            return self.official.query_by_arch(index, hp)
        self._check_trial(hp, None, False)
        names = TableArchResults(self, index, hp).get_dataset_names()
        lines = [self.arch_strs[index], f"datasets : {names}, extra-info : arch-index={index}"]
        for d in names:
            cost = self.get_cost_info(index, d)
            held = sorted(((s, values[index]) for (h, dd, s), values in self.metrics.items() if (h, dd) == (hp, d)),
                          key=lambda item: item[0] != "x-valid")  # valid before test, as NATS-Bench
            words = [("valid" if s == "x-valid" else "test" if s == TEST_SET[d] else s, acc) for s, acc in held]
            lines.append(f"{d:14s} FLOP={cost['flops']:6.2f} M, Params={cost['params']:.3f} MB, latency=None ms.")
            lines.append(f"{d:14s} " + ", ".join(f"{word} : [top1 = {acc:.2f}%]" for word, acc in words)
                         + f" ({hp} epochs, mean over seeds)")
        return "\n".join(lines)

    def query_by_arch(self, arch: int | str, hp: str | int | bool = "200") -> str:
        """NB201's name of :meth:`query_info_str_by_arch`."""
        return self.query_info_str_by_arch(arch, hp)

    def show(self, index: int = -1) -> None:
        """Print what the benchmark holds on architecture ``index`` (-1: on every architecture)."""
        if self.official is not None:
            return self.official.show(index)
        for i in range(len(self)) if index == -1 else [self.check_index(index)]:
            print(self.query_info_str_by_arch(i))

    def __getattr__(self, name: str) -> Any:
        official = self.__dict__.get("official")
        if official is not None and not name.startswith("_"):
            return getattr(official, name)
        if name in _OFFICIAL_ONLY:
            raise UserError(f"{name} needs the trials of {OFFICIAL}; the shipped table holds 200-epoch test "
                            f"accuracies only")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
