"""ABS: the block-decomposed angle against the direct formula, candidate sampling, scoring and drop rules."""
import numpy as np
import pytest
import torch

from anglenas.abs.angle import ArchAngles, snapshot
from anglenas.abs.candidates import CandidateSampler, check_flops_feasible
from anglenas.abs.scoring import apply_drops, drop_global, drop_per_layer, score_operators
from anglenas.errors import UserError
from anglenas.spaces import reference_table
from anglenas.spaces.mobilenet import FAIRNAS_SPACE, GPU_SPACE, IDENTITY
from anglenas.spaces.mobilenet.supernet import MobileSuperNet


def direct_angle(model, base, arch):
    """arccos of the cosine between the concatenated weight vectors, in the original's ``get_arch_vector`` order."""
    def vector(get):
        parts = [get("stem.0.weight"), get("first_block.conv.0.weight"), get("first_block.conv.3.weight"),
                 get("head.0.weight"), get("classifier.weight")]
        for i, op in enumerate(arch):
            if op != IDENTITY:
                parts += [get(f"layers.{i}.ops.{op}.conv.{j}.weight") for j in (0, 3, 6)]
        return torch.cat([p.reshape(-1) for p in parts]).double()

    params = dict(model.named_parameters())
    v0, v1 = vector(lambda n: base[n]), vector(lambda n: params[n].detach())
    return torch.arccos(torch.dot(v0, v1) / (v0.norm() * v1.norm())).item()


@pytest.mark.parametrize("space", [GPU_SPACE.scaled(0.5), FAIRNAS_SPACE.scaled(0.5)])
def test_block_angles_equal_the_direct_formula(space):
    torch.manual_seed(0)
    model = MobileSuperNet(space)
    base = snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + 0.3 * torch.rand_like(p)).add_(0.05 * torch.randn_like(p))
    rng = np.random.default_rng(1)
    archs = np.array([[rng.choice(layer) for layer in space.initial_operations()] for _ in range(8)])
    archs[0] = [IDENTITY if layer.identity_allowed else 5 for layer in space.layers]
    got = ArchAngles(model, base, space).angles(archs)
    for arch, theta in zip(archs, got.tolist()):
        assert theta == pytest.approx(direct_angle(model, base, arch), abs=1e-5)
    assert ArchAngles(model, snapshot(model), space).angles(archs).abs().max() < 1e-6  # W == W0 -> angle 0


def test_candidates_contain_the_operator_and_respect_flops():
    ops = GPU_SPACE.initial_operations()
    table = reference_table("gpu")
    sampler = CandidateSampler(GPU_SPACE, ops, np.random.default_rng(0), flops=table, max_flops=450e6)
    archs = sampler.sample_containing(3, IDENTITY, 300)
    assert len(archs) == 300 and (archs[:, 3] == IDENTITY).all()
    assert (table.batch_flops(archs) <= 450e6).all()
    assert len({a.tobytes() for a in archs}) == 300
    more = sampler.sample_containing(4, 2, 50)  # never repeats a child seen earlier in the round
    assert not {a.tobytes() for a in more} & {a.tobytes() for a in archs}


def test_uniform_depth_sampling():
    """The number of identity layers among the other 14 identity-capable layers is uniform on 0..14."""
    ops = GPU_SPACE.initial_operations()
    sampler = CandidateSampler(GPU_SPACE, ops, np.random.default_rng(0))
    archs = sampler.sample_containing(0, 1, 15000)
    others = [i for i, layer in enumerate(GPU_SPACE.layers) if layer.identity_allowed and i != 1]
    counts = np.bincount((archs[:, others] == IDENTITY).sum(1), minlength=15)
    assert counts.sum() == 15000 and len(counts) == 15
    assert counts.min() > 800 and counts.max() < 1200  # expected 1000 each
    non_id = archs[:, others][archs[:, others] != IDENTITY]
    assert set(np.unique(non_id)) == set(range(6))


def test_fairnas_sampling_is_uniform_per_layer():
    ops = [[0, 3], *[[1, 2, 4]] * 18]
    archs = CandidateSampler(FAIRNAS_SPACE, ops, np.random.default_rng(0)).sample_containing(0, 3, 3000)
    assert (archs[:, 0] == 3).all()
    freq = np.bincount(archs[:, 5], minlength=6)[[1, 2, 4]] / 3000
    assert np.allclose(freq, 1 / 3, atol=0.04)


def test_infeasible_flops_limits():
    with pytest.raises(UserError, match="no architecture of this space meets the FLOPs limits"):
        check_flops_feasible(GPU_SPACE.initial_operations(), reference_table("gpu"), 0, 100e6)


def test_scores_are_means_over_the_first_children_containing_the_operator():
    ops = [[0, 1], [2, 3, -1], [4], [0, 1, 2, 3]]  # 24 children, each operator in at least 6
    sampler = CandidateSampler(FAIRNAS_SPACE, ops, np.random.default_rng(0))

    def fake_angles(archs):  # a deterministic function of the child
        return torch.as_tensor(archs.sum(1) * 0.1 + archs[:, 0] * 0.01, dtype=torch.float64)

    scores, children = score_operators(ops, sampler, fake_angles, sample_num=3)
    assert len({c.tobytes() for c in children}) == len(children)
    assert set(scores) == {(0, 0), (0, 1), (1, 2), (1, 3), (1, -1), (3, 0), (3, 1), (3, 2), (3, 3)}  # not layer 2
    for (layer, op), score in scores.items():
        matching = [c for c in children if c[layer] == op][:3]
        assert len(matching) == 3
        assert score == pytest.approx(np.mean([c.sum() * 0.1 + c[0] * 0.01 for c in matching]))


def test_global_drop_rule_keeps_the_best_op_of_each_layer():
    ops = [[0, 1, 2], [3, -1], [4, 5]]
    scores = {(0, 0): 0.1, (0, 1): 0.2, (0, 2): 0.9, (1, 3): 0.05, (1, -1): 0.06, (2, 4): 0.3, (2, 5): 0.01}
    # ascending: (2,5) (1,3) (1,-1) (0,0) (0,1) (2,4) (0,2); (1,-1) is its layer's best, so it survives
    assert drop_global(ops, scores, 3) == [(2, 5), (1, 3), (0, 0)]
    assert drop_global(ops, scores, 10) == [(2, 5), (1, 3), (0, 0), (0, 1)]
    assert apply_drops(ops, [(1, 3), (0, 0)]) == [[1, 2], [-1], [4, 5]]


def test_identity_can_be_dropped():
    scores = {(0, 2): 0.5, (0, -1): 0.1}
    assert drop_global([[2, -1]], scores, 7) == [(0, -1)]


def test_per_layer_drop_rule():
    ops = [[0, 1, 2], [3, 4], [5]]
    scores = {(0, 0): 0.3, (0, 1): 0.1, (0, 2): 0.2, (1, 3): 0.7, (1, 4): 0.6}
    assert drop_per_layer(ops, scores) == [(0, 1), (1, 4)]
