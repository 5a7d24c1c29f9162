"""Checks every registered searcher passes on every registered space it fits (as test_spaces_shared.py does for
spaces): a tiny search through the search stage runs, its result round-trips through search_result.json, every
architecture it reports obeys the shrunk operations file, and the final-training stage trains the best one.

A searcher registered in this file alone (``toy_random``) gets the same checks: the smallest complete example of a
searcher plug-in.
"""
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from search_common import search_in_process

from anglenas.config import RuntimeConfig, field, override
from anglenas.operations import Operations
from anglenas.search_result import SearchResult, read_search_result, write_search_result
from anglenas.searchers.registry import SearchInputConfig, get_searcher, register_searcher, searcher_names
from anglenas.spaces import get_space, register_space, space_names
from anglenas.spaces.base import SearchSpace
from anglenas.spaces.darts import Genotype
from anglenas.spaces.darts.supernet import edge_index
from anglenas.spaces.nb201 import NB201Space


@dataclass
class ToyRandomConfig(SearchInputConfig, RuntimeConfig):
    """Picks random architectures of the space and scores each by its FLOPs (no training)."""

    save: str = override("runs/toy-random")
    candidates: int = field(5, "architectures drawn", low=1)


def run_toy_random(cfg: ToyRandomConfig, operations: Operations) -> SearchResult:
    """A random architecture of the space, scored by its FLOPs (the smallest first)."""
    space, rng = operations.space, np.random.default_rng(cfg.seed)
    archs = [space.random_arch(operations.ops, rng) for _ in range(cfg.candidates)]
    scored = sorted((space.arch_cost(a)[0] / 1e6, a) for a in archs)
    return SearchResult("toy_random", space.name, [a for _, a in scored], [s for s, _ in scored],
                        score_name="FLOPs (M)", operations=operations.ops)


register_searcher("toy_random", ToyRandomConfig, "supernet", "gpu")(run_toy_random)


@dataclass(frozen=True)
class PlainNB201(NB201Space):
    """NB201 without a relaxed supernet: a space that only single-path searchers fit."""

    name: str = "plain_nb201"
    relaxed_supernet = SearchSpace.relaxed_supernet


@register_space
def plain_nb201() -> PlainNB201:
    return PlainNB201()

DATA = ["--dataset", "embedded", "--device", "cpu", "--threads", "1"]
TINY = {
    "spos": DATA + ["--workers", "0", "--width_mult", "0.25", "--stem_stride", "1", "--batch_size", "64",
                    "--epochs", "1", "--bn_images", "64", "--bn_batch_size", "64", "--val_images", "64",
                    "--population_num", "4", "--select_num", "2", "--crossover_num", "1", "--mutation_num", "1",
                    "--max_epochs", "2", "--min_flops", "0", "--max_flops", "1e12"],
    "darts": ["--demo", "--epochs", "1", "--threads", "1"],
    "pdarts": ["--demo", "--epochs", "1", "--eps_no_arch", "0", "--threads", "1"],
    "proxylessnas": ["--demo", "--warmup_epochs", "0", "--n_epochs", "2", "--cpu_threads", "1"],
    "pertnas": ["--demo", "--threads", "1", "--npop", "1", "--steps_per_epoch", "1", "--batch_size", "16",
                "--val_size", "32", "--fine_extra_steps", "0", "--topology_extra_steps", "0"],
    "toy_random": [],
}
TINY["fairnas"] = TINY["rsps"] = TINY["spos"]
SMALL = {"nb201": ["--init_channels", "4", "--layers", "1"], "darts": ["--init_channels", "4", "--layers", "2"]}
"""Cell spaces at their smallest for the searchers with --init_channels / --layers."""


def shrunk(space) -> list[list[int]]:
    """The last two ops of every site (so every site keeps a choice and every searcher has equal op counts)."""
    return [site[-2:] for site in space.initial_operations()]


def pairs() -> list[tuple[str, str]]:
    """Every (searcher, built-in space) pair that fits."""
    builtin = [sp for sp in space_names() if type(get_space(sp)).__module__.startswith("anglenas.")]
    return [(s, sp) for s in searcher_names() for sp in builtin
            if get_searcher(s).needs != "relaxed" or get_space(sp).has_relaxed_supernet]


def obeys(space_name: str, arch, ops: list[list[int]]) -> bool:
    """Every op ``arch`` places at a site is one the operations file keeps there."""
    if isinstance(arch, Genotype):  # each (op, input state) of node j is edge (j <- state)
        from anglenas.spaces.darts.ops import PRIMITIVES

        for kind in (arch.normal, arch.reduce):
            for i, (op, state) in enumerate(kind):
                if PRIMITIVES.index(op) not in ops[edge_index(i // 2 + 2, state)]:
                    return False
        return True
    absent = (0,) if space_name == "darts" else ()  # a 14-op DARTS child drops an edge as `none` (the 2-input rule)
    return all(int(op) in site or int(op) in absent for op, site in zip(arch, ops))


QUICK = {"spos": "gpu", "fairnas": "fairnas", "rsps": "shufflenetv2", "darts": "nb201", "pdarts": "darts",
         "proxylessnas": "gpu", "pertnas": "nb201"}
"""The one space per searcher that ``make test`` checks it on (together: every built-in space; a searcher not
listed: its home space); the other pairs are marked slow and run in ``make test-all``."""


def marked_pairs() -> list:
    """:func:`pairs`, each a ``pytest.param`` marked slow unless it is its searcher's quick pair."""
    return [pytest.param(s, sp, marks=() if QUICK.get(s, get_searcher(s).home_space) == sp else pytest.mark.slow)
            for s, sp in pairs()]


@pytest.mark.parametrize("searcher,space_name", marked_pairs())
def test_a_tiny_search_obeys_the_shrunk_space_round_trips_and_trains(searcher, space_name, tmp_path):
    torch.set_num_threads(1)
    space = get_space(space_name)
    ops = shrunk(space)
    Operations(space, ops).save(tmp_path / "ops.json")
    extra = SMALL.get(space_name, []) if searcher in ("darts", "pdarts", "pertnas") else []
    argv = [*TINY[searcher], *extra, "--operations_path", str(tmp_path / "ops.json"), "--save", str(tmp_path / "s")]
    if searcher == "pertnas":  # PertNAS' run folder is SAVE/search-NOTE
        argv += ["--note", "t"]
    doc = search_in_process(argv, searcher)
    assert doc["searcher"] == searcher and doc["space"] == space_name and doc["cost"]["wall_seconds"] >= 0

    folder = tmp_path / "s" / ("search-t" if searcher == "pertnas" else "")
    result = read_search_result(folder / "search_result.json")
    assert result.archs and len(result.scores) == len(result.archs)
    for arch in result.archs:
        space.check_arch(arch)
        assert obeys(space_name, arch, ops), f"{searcher} chose a dropped op on {space_name}: {arch}"
    write_search_result(result, tmp_path / "again.json")
    assert read_search_result(tmp_path / "again.json").archs == result.archs

    from anglenas.config import parse_config
    from anglenas.stages.train import FinalTrainConfig, FinalTrainer

    train = parse_config(FinalTrainConfig, [
        "--arch", str(folder / "search_result.json"), "--demo", "--epochs", "0", "--total_iters", "2",
        "--batch_size", "16", "--eval_every", "2", "--eval_limit", "32", "--threads", "1",
        "--save", str(tmp_path / "train")])
    summary = FinalTrainer(train).run()
    assert summary["space"] == space_name and 0 <= summary["top1"] <= 100


def test_a_pair_that_does_not_fit_is_refused_in_one_line(tmp_path):
    from anglenas.errors import UserError

    with pytest.raises(UserError, match="darts needs a relaxed supernet, which the plain_nb201 space does not have; "
                                        "search it with .*spos"):
        search_in_process(["--space", "plain_nb201", "--save", str(tmp_path / "s")], "darts")
    assert not (tmp_path / "s").exists()  # refused before anything was created
