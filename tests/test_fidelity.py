"""Behaviours that follow the original's actual code (found by running it beside ours): FairNAS FLOPs in real
units, the classifier's weight decay in training from scratch, the evolution's mutation count and retry budget,
and the base-weight refresh counting the operators really dropped."""
import json

import numpy as np
import pytest

from anglenas.config import parse_config
from anglenas.searchers.spos.evolution import EvolutionConfig, EvolutionSearch
from anglenas.searchers.spos.search import SearchConfig
from anglenas.spaces import get_space, reference_table
from anglenas.spaces.mobilenet import FAIRNAS_STEM_OVERCOUNT, IDENTITY
from anglenas.stages.train import FinalTrainConfig
from anglenas.train.optim import sgd

FAIRNAS_ABS = [4, 2, 4, 2, 2, 2, 5, 2, 4, 4, 2, 2, 2, 4, 5, 4, 2, 2, 5]


def test_fairnas_limits_are_the_originals_in_real_flops():
    assert FAIRNAS_STEM_OVERCOUNT == 12_845_056  # 32 * 32 * 112 * 112, a 1x1 conv the network does not have
    cfg = parse_config(SearchConfig, ["--method", "fairnas", "--operations_path", "x"])
    fairnas = get_space("fairnas")  # the FairNAS search's window is its space's
    low, high = fairnas.search_min_flops, fairnas.search_max_flops
    assert (low, high) == (315e6 - 12_845_056, 327e6 - 12_845_056)  # 302.15M-314.15M
    assert (cfg.batch_size, cfg.lr, cfg.min_flops, cfg.max_flops) == (1024, 0.5, None, None)
    assert low <= reference_table("fairnas").arch_flops(FAIRNAS_ABS) <= high  # 312.22M
    assert get_space("fairnas").shrink.max_flops == 330e6 - 12_845_056
    spos = parse_config(SearchConfig, ["--operations_path", "x"])
    assert (spos.method, spos.max_flops, spos.batch_size, spos.lr, spos.seed) == ("spos", None, 512, 0.25, 0)
    assert get_space("gpu").search_max_flops == 475e6  # SPOS' ceiling is the space's
    explicit = parse_config(SearchConfig, ["--method", "fairnas", "--lr", "0.1", "--operations_path", "x"])
    assert explicit.lr == 0.1 and explicit.batch_size == 1024  # a flag beats the searcher's default


@pytest.mark.parametrize("decay_classifier", [False, True])
def test_training_from_scratch_decays_the_classifier_only_on_request(decay_classifier):
    space = get_space("gpu").scaled(0.25, 32, 10, 1)
    model = space.network(space.published["SPOS_ABS"])
    names = {id(p): n for n, p in model.named_parameters()}
    flags = ["--decay_classifier"] if decay_classifier else []
    cfg = parse_config(FinalTrainConfig, flags)
    decayed, plain = sgd(model, 0.1, 0.9, cfg.weight_decay, decay_linear=cfg.decay_classifier).param_groups
    decayed_names = {names[id(p)] for p in decayed["params"]}
    convs = {n for n, p in model.named_parameters() if p.ndim == 4}
    assert decayed["weight_decay"] == 4e-5 and plain["weight_decay"] == 0
    assert decayed_names == convs | ({"classifier.weight", "classifier.bias"} if decay_classifier else set())


def shrunk_gpu_ops() -> list[list[int]]:
    """About 1.8e6 architectures (2^18 x 7), most of them under 475M FLOPs."""
    space = get_space("gpu")
    ops = [[0, IDENTITY] if layer.identity_allowed else [0, 2] for layer in space.layers]
    ops[1] = list(range(6)) + [IDENTITY]
    ops[19], ops[20] = [0], [0]
    return ops


def test_evolution_breeds_a_full_generation_without_random_fill():
    ops = shrunk_gpu_ops()
    assert np.prod([len(site) for site in ops]) == 2 ** 18 * 7
    table = reference_table("gpu")
    assert table.bounds(ops)[0] <= 475e6 < table.bounds(ops)[1]  # the FLOPs ceiling excludes part of it

    class Score:
        def evaluate(self, archs, on_result):
            for arch in archs:  # a smooth landscape with a unique optimum: parents stay close to each other
                on_result(arch, float(sum(op == 0 for op in arch)) + 0.001 * sum(arch))

    cfg = EvolutionConfig(max_epochs=12)  # the original's 50 / 10 / 25 / (50 - crossover)
    evo = EvolutionSearch(ops, cfg, seed=0, legal=lambda arch: table.arch_flops(arch) <= 475e6)
    while not evo.done:
        evo.step(Score())
    late = [g for g in evo.history if g["epoch"] >= 10]
    assert late and all(g["random"] == 0 and g["crossover"] + g["mutation"] == 50 for g in late)
    capped = EvolutionSearch(ops, EvolutionConfig(max_epochs=12, mutation_num=25), seed=0,
                             legal=lambda arch: table.arch_flops(arch) <= 475e6)
    while not capped.done:
        capped.step(Score())
    assert any(g["random"] > 0 for g in capped.history)  # --mutation_num 25: our earlier, capped behaviour


def test_base_weights_are_replaced_after_the_operators_actually_dropped(tmp_path):
    from anglenas.stages.shrink import DEMO, ShrinkConfig, Shrinker

    cfg = parse_config(ShrinkConfig, presets={"demo": DEMO}, argv=[
        "--demo", "--drop_rule", "per_layer", "--base_refresh_threshold", "30", "--first_stage_epochs", "0",
        "--other_stage_epochs", "0", "--sample_num", "3", "--max_rounds", "2", "--stop_threshold", "1",
        "--save", str(tmp_path / "run")])
    Shrinker(cfg).run()
    history = json.loads((tmp_path / "run" / "scores.json").read_text())
    assert [len(r["dropped"]) for r in history] == [21, 21]  # per layer: one op in each of the 21 layers
    log = (tmp_path / "run" / "log.txt").read_text()
    # 21 drops after round 0 (<= 30), 42 after round 1: replaced then, not after round 4 as (round + 1) * 7 says
    assert "W0 replaced by the current weights (42 drops so far)" in log
