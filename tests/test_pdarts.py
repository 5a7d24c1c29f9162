"""PDARTS: the op-dropping rule, edge selection and skip-connect restriction on hand-made inputs, the stage schedule
from the flags, the skip-dropout schedule, and a tiny search in an ABS space (through the search stage)."""
import json
import math

import numpy as np
import pytest

from anglenas.config import parse_config
from anglenas.errors import UserError
from anglenas.operations import load_operations
from anglenas.search_result import read_search_result
from anglenas.searchers.darts.pdarts import PdartsConfig, build_schedule, run_pdarts, skip_dropout_rate
from anglenas.searchers.darts.search import DartsConfig
from anglenas.searchers.darts.switches import (
    drop_ops,
    drop_weakest,
    edge_strength,
    final_genotypes,
    keep_two_edges,
    min_k_no_zero,
    restrict_skips,
    skip_count,
    switched_on,
    switches_from_ops,
)
from anglenas.searchers.registry import get_searcher
from anglenas.spaces import get_space
from anglenas.spaces.darts.genotypes import load_genotype
from anglenas.spaces.darts.ops import PRIMITIVES
from anglenas.stages.search import run_search

NONE, SKIP, SEP3, SEP5, DIL3, DIL5 = 0, 3, 4, 5, 6, 7


pytestmark = pytest.mark.usefixtures("one_thread")


def test_min_k_drops_none_first_then_the_weakest():
    assert min_k_no_zero([0.5, 0.1, 0.4], [NONE, SKIP, SEP3], 2) == [0, 1]
    assert min_k_no_zero([0.05, 0.5, 0.45], [NONE, SKIP, SEP3], 1) == [0]      # none goes even when strongest
    assert min_k_no_zero([0.5, 0.1, 0.4], [SKIP, SEP3, SEP5], 1) == [1]
    switches = switches_from_ops([[NONE, SKIP]] * 14)
    probs = np.tile([0.9, 0.1], (14, 1))
    assert switched_on(drop_ops(switches, probs, 1, none_first=True)) == [[SKIP]] * 14
    assert switched_on(drop_ops(switches, probs, 1, none_first=False)) == [[NONE]] * 14


def test_keep_two_edges_per_node():
    strength = [0.1, 0.2, 0.5, 0.8, 0.9, 0.3, 0.1, 0.6, 0.2, 0.0, 0.7, 0.1, 0.4, 0.2]
    kept = keep_two_edges(switches_from_ops([[SEP3]] * 14), strength)
    assert [e for e, edge in enumerate(kept) if any(edge)] == [0, 1, 3, 4, 5, 7, 10, 12]


def _hand_cell():
    """2 ops per edge; final choice: skips on edges 0, 1, 4 (node 0 and node 1), sep5 elsewhere."""
    ops = [[SKIP, SEP3], [SKIP, DIL3], [NONE, SKIP], [SEP3, SEP5], [SKIP, DIL5]] + [[SEP3, SEP5]] * 9
    probs = np.array([[0.6, 0.4], [0.7, 0.3], [0.5, 0.5], [0.2, 0.8], [0.9, 0.1]] + [[0.45, 0.55]] * 9)
    return switches_from_ops(ops), probs


def test_skip_connect_restriction_by_hand():
    before, probs = _hand_cell()
    genotypes = final_genotypes(probs, probs, before, before, k=1)
    unrestricted = [("skip_connect", 0), ("skip_connect", 1), ("sep_conv_5x5", 1), ("skip_connect", 2),
                    ("sep_conv_5x5", 2), ("sep_conv_5x5", 3), ("sep_conv_5x5", 3), ("sep_conv_5x5", 4)]
    assert genotypes[8].normal == genotypes[3].normal == unrestricted
    # cap 2: the weakest skip (edge 0, p 0.6) gives way to sep_conv_3x3
    assert genotypes[2].normal[:4] == [("sep_conv_3x3", 0), ("skip_connect", 1), ("sep_conv_5x5", 1),
                                       ("skip_connect", 2)]
    # cap 0: edge 1 -> dil3, edge 4 -> dil5 (p 0.1); node 1 then prefers edge 2's skip (0.5), which is zeroed in
    # turn, so node 1 ends with edges 3 (sep5, 0.8) and 4 (dil5, 0.1)
    assert genotypes[0].normal[:4] == [("sep_conv_3x3", 0), ("dil_conv_3x3", 1), ("sep_conv_5x5", 1),
                                       ("dil_conv_5x5", 2)]
    assert genotypes[0].reduce == unrestricted           # the reduction cell is never restricted


def test_skip_restriction_stops_where_upstream_loops_forever():
    before, probs = _hand_cell()
    before[0] = [op in (NONE, SKIP) for op in range(8)]   # edge 0 = [none, skip]: none is always dropped first
    probs[0] = [0.0, 0.3]
    probs = edge_strength(probs, before)                   # none's probability zeroed, as after the last stage
    switches = keep_two_edges(drop_ops(before, probs, 1, none_first=True), probs.max(axis=1))
    assert skip_count(switches) == 3
    restricted, _ = restrict_skips(switches, before, probs, 0, 1)
    assert skip_count(restricted) == 1 and restricted[0][SKIP]


def test_schedule_from_flags():
    abs_cfg = PdartsConfig(operations_path="x")
    s = build_schedule(abs_cfg, 2, from_file=True)
    assert (s.add_layers, s.add_width, s.dropout, s.num_to_drop) == ([12], [0], [0.7], [1])
    s = build_schedule(PdartsConfig(), 8, from_file=False)
    assert (s.add_layers, s.dropout, s.num_to_drop) == ([0, 6, 12], [0.1, 0.4, 0.7], [3, 2, 2])
    s = build_schedule(PdartsConfig(add_layers="0,3,6", dropout_rate="0 0.2 0.3"), 8, from_file=False)
    assert s.add_layers == [0, 3, 6] and s.dropout == [0.0, 0.2, 0.3]       # user values are used, not ignored
    with pytest.raises(UserError, match="3 stages"):
        build_schedule(PdartsConfig(add_layers="12"), 8, from_file=False)
    with pytest.raises(UserError, match="exactly 1 op per edge"):
        build_schedule(PdartsConfig(num_to_drop="3,2"), 8, from_file=False)


def test_skip_dropout_schedule():
    assert skip_dropout_rate(0, 25, 10, 0.7, 0.2) == pytest.approx(0.7 * 24 / 25)
    assert skip_dropout_rate(9, 25, 10, 0.7, 0.2) == pytest.approx(0.7 * 15 / 25)
    assert skip_dropout_rate(10, 25, 10, 0.7, 0.2) == pytest.approx(0.7)
    assert skip_dropout_rate(15, 25, 10, 0.7, 0.2) == pytest.approx(0.7 * math.exp(-1.0))


def test_paper_commands_parse():
    cfg = parse_config(PdartsConfig, ["--save", "PDARTS_ABS", "--tmp_data_dir", "DIR", "--operations_path", "F"])
    assert (cfg.save, cfg.data_dir, cfg.operations_path, cfg.epochs, cfg.batch_size) == \
        ("PDARTS_ABS", "DIR", "F", 25, 96)
    cfg = parse_config(DartsConfig, ["--data", "DIR", "--unrolled", "--save", "DARTS_ABS", "--operations_path", "F"])
    space = get_space("darts")
    model = space.relaxed_supernet(space.initial_operations(), channels=cfg.init_channels, depth=cfg.depth)
    assert cfg.unrolled and (cfg.data_dir, cfg.save, cfg.epochs, cfg.batch_size, len(model.cells), model.C) == \
        ("DIR", "DARTS_ABS", 50, 64, 8, 16)
    assert (cfg.seed, cfg.learning_rate_min, cfg.stem_stride) == (2, 0.001, 1)
    with pytest.raises(UserError, match="--train_portion must be 0 to 1, got 1.5"):
        parse_config(DartsConfig, ["--train_portion", "1.5"])


def test_drop_weakest_keeps_one_op_and_drops_none_first():
    assert drop_weakest([1, 3, 4], [0.2, 0.5, 0.3], 1) == [3, 4]
    assert drop_weakest([0, 3, 4], [0.9, 0.05, 0.05], 1, none=0) == [3, 4]      # none goes first, however strong
    assert drop_weakest([0, 3, 4], [0.9, 0.05, 0.06], 2, none=0) == [4]
    assert drop_weakest([2, 3], [0.6, 0.4], 5) == [2]                          # never fewer than one op
    assert drop_weakest([-1, 2, 5], [0.1, 0.7, 0.2], 2, none=None) == [2]      # any op ids (MobileNet identity -1)


def _write(path, ops):
    path.write_text(json.dumps({"format": "anglenas-operations", "version": 1, "space": "darts",
                                "operations": ops}))
    return path


def test_tiny_abs_search_writes_genotype(tmp_path):
    ops = [[NONE, SEP3], [SKIP, DIL3], [1, SEP5], [SEP3, DIL5], [2, DIL3], [NONE, SEP5], [SKIP, SEP3], [DIL3, DIL5],
           [1, SEP3], [NONE, DIL5], [SEP5, DIL3], [SKIP, SEP5], [2, SEP3], [SEP3, DIL3]]
    path = _write(tmp_path / "ops.json", ops)
    cfg = PdartsConfig(dataset="embedded", operations_path=str(path), save=str(tmp_path / "p"), init_channels=2,
                       depth=2, add_layers="1", batch_size=8, epochs=2, eps_no_arch=1, steps_per_epoch=2,
                       eval_limit=16, device="cpu", threads=1)
    result = run_search(get_searcher("pdarts"), cfg)
    genotype = result.best
    assert load_genotype(tmp_path / "p" / "genotype.json") == genotype
    assert read_search_result(tmp_path / "p").archs[0] == genotype and result.arch_details[0] == {"max_skip": 2}
    for cell in (genotype.normal, genotype.reduce):
        for i, (op, src) in enumerate(cell):
            assert op != "none" and PRIMITIVES.index(op) in ops[[0, 2, 5, 9][i // 2] + src]
    assert sum(op == "skip_connect" for op, _ in genotype.normal) <= 2
    assert sorted(json.loads((tmp_path / "p" / "skip_restricted.json").read_text()), key=int) == \
        [str(c) for c in range(9)]
    history = result.details["history"]
    assert [r["lr"] for r in history] == [pytest.approx(0.0125), 0.0]   # upstream: the last epoch runs at lr 0


def test_two_stage_search_resumes_across_the_stage_boundary(tmp_path):
    ops = [[NONE, SEP3, DIL3], [SKIP, SEP5, DIL3], [1, SEP5, DIL5], [SEP3, SEP5, DIL5], [2, SEP3, DIL3]] + \
        [[NONE, SKIP, SEP5]] * 9
    path = _write(tmp_path / "ops3.json", ops)
    operations = load_operations(path)

    def cfg(save):
        return PdartsConfig(dataset="embedded", operations_path=str(path), save=str(tmp_path / save),
                            init_channels=2, depth=2, add_layers="0,1", dropout_rate="0.2,0.4", num_to_drop="1,1",
                            batch_size=8, epochs=1, eps_no_arch=0, steps_per_epoch=2, eval_limit=16, device="cpu",
                            threads=1)

    straight = run_pdarts(cfg("a"), operations)
    assert run_pdarts(cfg("b"), operations, max_epochs=1) is None        # killed after stage 1, its switches saved
    assert run_pdarts(cfg("b"), operations).best == straight.best
    log = (tmp_path / "a" / "log.txt").read_text()
    assert "stage 2/2: 3 cells, C=2, 2 ops per edge" in log    # stage 2: 2 + 1 cells, one op dropped per edge
