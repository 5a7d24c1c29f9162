"""NATS-Bench's entry points over this package's benchmark: code written for ``nats_bench`` and ``xautodl`` runs
with one changed import.

    from anglenas.nb201 import create, get_cell_based_tiny_net   # was: nats_bench / xautodl.models
    api = create(None, "tss", fast_mode=True, verbose=False)     # None: the table shipped with the package
    index, accuracy = api.find_best("cifar10", "test", hp="200")
    network = get_cell_based_tiny_net(api.get_net_config(index, "cifar10"))
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from anglenas.errors import UserError
from anglenas.nb201.api import Benchmark
from anglenas.spaces.nb201 import cells as space
from anglenas.spaces.nb201.network import NB201Network

TOPOLOGY_NAMES = ("tss", "topology")
SIZE_NAMES = ("sss", "size")


def create(file_path_or_dict: str | Path | None, search_space: str, fast_mode: bool = False,
           verbose: bool = True) -> Benchmark:
    """NATS-Bench's ``nats_bench.create`` for its topology space ('tss' / 'topology', the NAS-Bench-201 cells):
    ``None`` is the table shipped with the package (NATS-Bench reads ``$TORCH_HOME`` instead), a path an
    official NB201 / NATS-Bench file or a CSV in the shipped format (:meth:`Benchmark.load`). ``fast_mode`` is
    accepted for the signature: an official folder is read in NATS-Bench's fast mode, a file in full.
    ``verbose`` prints one line on what was loaded."""
    del fast_mode
    if search_space in SIZE_NAMES:
        raise UserError("NATS-Bench's size search space ('sss') is not held here: only its topology space ('tss', "
                        "the NAS-Bench-201 cells); for 'sss' use `pip install nats_bench` and its own create()")
    if search_space not in TOPOLOGY_NAMES:
        raise UserError(f"invalid search space {search_space!r}: NATS-Bench's are 'tss' / 'topology' (held here) "
                        f"and 'sss' / 'size'")
    if isinstance(file_path_or_dict, Mapping):
        raise UserError("a benchmark dict already loaded is not read here: pass the path of its file, or None for "
                        "the shipped table")
    bench = Benchmark.load(file_path_or_dict)
    if verbose:
        print(f"[{time.strftime('%Y-%m-%d %X', time.gmtime())}] Create NATS-Bench (topology) from {bench.source} "
              f"done with {len(bench.evaluated_indexes)}/{len(bench)} architectures available, "
              f"hp {'/'.join(bench.avaliable_hps)}.")
    return bench


def network_from_config(config: Mapping[str, Any] | Any) -> NB201Network:
    """The network of a NATS-Bench topology config (``api.get_net_config``: {'name': 'infer.tiny', 'C', 'N',
    'arch_str' or 'genotype', 'num_classes'}, as a dict or an object with those attributes), as
    ``xautodl.models.get_cell_based_tiny_net`` builds it. Unlike xautodl's ``TinyNetwork``, whose forward returns
    (features, logits), :class:`NB201Network` returns the logits."""
    def get(key: str) -> Any:
        return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)

    if get("name") != "infer.tiny":
        raise UserError(f"config name {get('name')!r}: only NATS-Bench topology networks ('infer.tiny', from "
                        f"get_net_config of a 'tss' benchmark) are built here")
    arch = get("arch_str") if get("arch_str") is not None else get("genotype")
    missing = [k for k, v in (("C", get("C")), ("N", get("N")), ("num_classes", get("num_classes")),
                              ("arch_str", arch)) if v is None]
    if missing:
        raise UserError(f"the 'infer.tiny' config lacks {', '.join(missing)}; pass api.get_net_config(index, dataset)")
    if hasattr(arch, "tostr"):  # an NB201 / xautodl Structure
        arch = arch.tostr()
    if not isinstance(arch, str):
        raise UserError(f"the config's arch {arch!r} is neither an arch string nor a genotype with tostr()")
    return NB201Network(space.parse(arch), num_classes=int(get("num_classes")), channels=int(get("C")),
                        cells_per_stage=int(get("N")))


get_cell_based_tiny_net = network_from_config
"""xautodl's name (``from xautodl.models import get_cell_based_tiny_net``)."""
