"""DARTS (first and second order) and PDARTS beyond the DARTS cell: on NAS-Bench-201 and the GPU (MobileNet) space,
through the search stage, in a shrunk operations file; DARTS' argmax rule on NB201 alphas set by hand; the DARTS
space's relaxed supernet per cell kind and with removed edges."""
import json
import math

import numpy as np
import pytest
import torch

from anglenas.operations import Operations
from anglenas.search_result import read_search_result
from anglenas.searchers.darts.common import arch_score
from anglenas.spaces import get_space
from anglenas.spaces.relaxed import FixedMixing, SoftmaxMixing
from anglenas.stages.search import parse_search, run_search

NB201_OPS = [[0, 3], [1, 3], [2, 3, 4], [0, 1], [3, 4], [1, 2]]  # unequal counts; none (0) on edges 0 and 3


def gpu_ops() -> list[list[int]]:
    """2 ops per layer: the first and the last of its list (identity, -1, where the layer allows it)."""
    return [[site[0], site[-1]] for site in get_space("gpu").initial_operations()]


pytestmark = pytest.mark.usefixtures("one_thread")


def _search(tmp_path, searcher, space, ops, *flags):
    path = tmp_path / "ops.json"
    path.write_text(json.dumps({"format": "anglenas-operations", "version": 1, "space": space, "operations": ops}))
    chosen, cfg = parse_search(["--searcher", searcher, "--space", space, "--demo", "--operations_path", str(path),
                                "--save", str(tmp_path / "run"), "--device", "cpu", "--epochs", "1",
                                "--steps_per_epoch", "1", "--eval_limit", "8", *flags])
    return run_search(chosen, cfg), read_search_result(tmp_path / "run")


@pytest.mark.parametrize("space", ["nb201", "gpu"])
@pytest.mark.parametrize("searcher, flags", [("darts", []), ("darts", ["--unrolled"]),
                                             ("pdarts", ["--eps_no_arch", "0"])])
def test_search_returns_an_architecture_of_the_shrunk_space(tmp_path, space, searcher, flags):
    ops = NB201_OPS if space == "nb201" else gpu_ops()
    result, saved = _search(tmp_path, searcher, space, ops, *flags)
    assert (saved.searcher, saved.space, saved.operations) == (searcher, space, ops)
    arch = saved.best
    assert Operations(get_space(space), ops).contains(arch) and saved.archs == result.archs
    assert not (tmp_path / "run" / "genotype.json").exists()  # a DARTS-cell file only
    (probs,) = result.details["history"][-1]["alphas"].values()  # one group of per-site weights
    columns = [sorted(site) if searcher == "pdarts" else site for site in ops]  # PDARTS: upstream's switch order
    assert [len(p) for p in probs] == [len(site) for site in ops] and np.allclose([sum(p) for p in probs], 1, atol=1e-5)
    chosen = [probs[s][columns[s].index(op)] for s, op in enumerate(arch)]
    assert saved.scores[0] == pytest.approx(np.mean(chosen), abs=1e-5)
    if searcher == "pdarts" and space == "nb201":  # the last stage drops none first, as upstream
        assert arch[0] == 3 and arch[3] == 1


def test_nb201_alphas_and_derived_arch_follow_darts_argmax():
    space = get_space("nb201").scaled(input_size=32, num_classes=10)
    model = space.relaxed_supernet(NB201_OPS, channels=4, depth=1)
    model.set_mixing(SoftmaxMixing())
    (alphas,) = model.arch_parameters()
    hand = torch.tensor([[0.5, 0.1, 9.0], [0.2, 0.3, 9.0], [0.0, 1.0, 2.0], [0.7, -0.7, 9.0], [1.5, 1.5, 9.0],
                         [-1.0, -2.0, 9.0]])  # column 2 lies beyond the 2-op edges: unused
    with torch.no_grad():
        alphas.copy_(hand)
    # DARTS on NB201 (xautodl's TinyNetworkDARTS.genotype): each edge's largest alpha, none included, first on ties
    assert model.derive() == [0, 3, 4, 0, 3, 1]
    probs = model.probabilities()[0]
    assert probs[0].tolist() == pytest.approx([1 / (1 + math.exp(-0.4)), 1 / (1 + math.exp(0.4))])
    e = np.exp([0.0, 1.0, 2.0])
    assert probs[2].tolist() == pytest.approx((e / e.sum()).tolist())
    assert arch_score(model, [0, 3, 4, 0, 3, 1]) == pytest.approx(np.mean([
        1 / (1 + math.exp(-0.4)), 1 / (1 + math.exp(-0.1)), e[2] / e.sum(), 1 / (1 + math.exp(-1.4)), 0.5,
        1 / (1 + math.exp(-1.0))]))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_darts_relaxed_supernet_per_cell_kind_and_removed_edges():
    space = get_space("darts").scaled(input_size=32, num_classes=10, stem_stride=1)
    normal = [[4, 5]] * 14
    reduce = [[1, 3]] * 14
    model = space.relaxed_supernet({"normal": normal, "reduce": reduce}, channels=2, depth=3)
    assert model.site_ops == [normal, reduce] and len(model.cells) == 3 and model.C == 2
    assert model.arch_names() == ["alphas_normal", "alphas_reduce"]
    # PertNAS' switches: an empty edge is removed; fixed unit weights sum an edge's ops
    pert = [[4, 5], [6]] + [[]] * 2 + [[4]] * 10
    net = space.relaxed_supernet(pert, channels=2, depth=3)
    assert [len(net.cells[0].edges[e].candidates) for e in range(4)] == [2, 1, 0, 0]
    assert net.alphas_normal.shape == (14, 2) and net.alphas_normal[2:4].abs().sum() == 0
    net.set_mixing(FixedMixing.ones(net))
    assert net(torch.randn(1, 3, 8, 8)).shape == (1, 10)
