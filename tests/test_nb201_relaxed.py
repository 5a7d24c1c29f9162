"""NB201's relaxed supernet (its DARTS network): a single path equals the SPOS supernet's with the same weights,
the arch read off hand-set alphas, edges restricted by a shrunk operations list."""
import re

import numpy as np
import pytest
import torch

from anglenas.errors import UserError
from anglenas.spaces.nb201 import NB201_SPACE
from anglenas.spaces.nb201.supernet import NB201SuperNet
from anglenas.spaces.relaxed import PathMixing, SoftmaxMixing

SHRUNK = [[1, 3], [0, 2, 3], [4], [0, 1, 2, 3, 4], [3, 4], [0, 3]]


pytestmark = pytest.mark.usefixtures("one_thread")


def relaxed_with_weights_of(supernet: NB201SuperNet, ops):
    """A relaxed supernet over ``ops`` holding ``supernet``'s weights: ``layers.I.edges.E.OP.…`` is
    ``layers.I.edges.E.candidates.K.…`` with K the position of OP in edge E's list."""
    torch.manual_seed(123)  # other initial weights, so that only the copy can make the outputs equal
    net = NB201_SPACE.relaxed_supernet(ops, channels=4, depth=2)
    state = {}
    for key, value in supernet.state_dict().items():
        m = re.match(r"^(layers\.\d+\.edges\.(\d+))\.(\d+)\.(.+)$", key)
        if m is None:
            state[key] = value
        elif int(m.group(3)) in ops[int(m.group(2))]:
            state[f"{m.group(1)}.candidates.{ops[int(m.group(2))].index(int(m.group(3)))}.{m.group(4)}"] = value
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert missing == ["alphas"] and unexpected == []
    return net


@pytest.mark.parametrize("ops", [NB201_SPACE.initial_operations(), SHRUNK])
def test_path_mixing_is_the_single_path_supernet(ops):
    torch.manual_seed(0)
    supernet = NB201SuperNet(num_classes=10, channels=4, cells_per_stage=2)
    net = relaxed_with_weights_of(supernet, ops)
    x = torch.randn(4, 3, 8, 8)
    rng = np.random.default_rng(0)
    cells = [tuple(int(rng.choice(site)) for site in ops) for _ in range(4)]
    cells.append(tuple(site[0] for site in ops))
    for mode in ("train", "eval"):  # batch statistics, then the running statistics both nets gathered
        supernet.train(mode == "train")
        net.train(mode == "train")
        for cell in cells:
            net.set_mixing(PathMixing.of_ops(net, [cell]))
            assert torch.equal(net(x), supernet(x, cell)), (mode, cell)


def test_derive_is_the_argmax_of_every_edge_none_included():
    torch.manual_seed(0)
    net = NB201_SPACE.relaxed_supernet(NB201_SPACE.initial_operations(), channels=4, depth=1)
    with torch.no_grad():
        net.alphas.copy_(torch.tensor([[0.9, 0.1, 0.2, 0.3, 0.4],    # none wins (DARTS on NB201 keeps it)
                                       [0.0, 0.0, 0.0, 1.0, 0.0],    # nor_conv_3x3
                                       [-1., -2., 0.5, 0.4, 0.49],   # nor_conv_1x1
                                       [0.2, 0.3, 0.2, 0.3, 0.31],   # avg_pool_3x3
                                       [0.0, 0.0, 0.0, 0.0, 0.0],    # a tie: the first op
                                       [0.1, 5.0, 0.1, 0.1, 0.1]]))  # skip_connect
    assert net.derive() == [0, 3, 2, 4, 0, 1]
    probs = net.probabilities()[0]
    assert probs[1][3] == pytest.approx(np.e / (np.e + 4))


def test_derive_on_a_shrunk_space_reads_each_edge_own_ops():
    net = NB201_SPACE.relaxed_supernet(SHRUNK, channels=4, depth=1)
    assert tuple(net.alphas.shape) == (6, 5)  # the widest edge has 5 ops
    alphas = torch.full((6, 5), 9.0)  # entries past an edge's op count are never read
    for e, winner in enumerate([1, 0, 0, 4, 0, 1]):  # index in the edge's own list
        alphas[e, :len(SHRUNK[e])] = 0.0
        alphas[e, winner] = 1.0
    with torch.no_grad():
        net.alphas.copy_(alphas)
    assert net.derive() == [3, 0, 4, 4, 3, 3]
    assert [len(p) for p in net.probabilities()[0]] == [2, 3, 1, 5, 2, 2]


def test_an_empty_edge_is_left_out_and_derives_to_none():
    ops = [list(range(5)) for _ in range(6)]
    ops[2] = []
    torch.manual_seed(0)
    supernet = NB201SuperNet(num_classes=10, channels=4, cells_per_stage=2)
    net = relaxed_with_weights_of(supernet, ops)
    x = torch.randn(2, 3, 8, 8)
    cell = (1, 3, 0, 2, 3, 4)  # edge 2 <- 1 is none in the supernet's path
    net.set_mixing(PathMixing({(0, e): ops[e].index(op) for e, op in enumerate(cell) if ops[e]}))
    assert torch.equal(net(x), supernet(x, cell))
    net.set_mixing(SoftmaxMixing())
    assert net(x).shape == (2, 10)
    assert net.derive()[2] == 0 and net.probabilities()[0][2].size == 0


def test_bad_sizes_and_ops_are_one_clear_error():
    with pytest.raises(UserError, match="depth >= 1"):
        NB201_SPACE.relaxed_supernet(NB201_SPACE.initial_operations(), depth=0)
    with pytest.raises(UserError, match="not allowed"):
        NB201_SPACE.relaxed_supernet([[0, 7]] + [[0]] * 5)
