"""The stand-alone network against the supernet path it comes from and the spec's FLOPs / layout numbers."""
import pytest
import torch

from anglenas.archs import PUBLISHED
from anglenas.flops import reference_table
from anglenas.nn import MobileSuperNet
from anglenas.nn.network import MobileNetwork, counted_flops, path_state_dict
from anglenas.spaces import GPU_SPACE, get_space

SPOS_ABS = PUBLISHED["SPOS_ABS"][1]
TINY = GPU_SPACE.scaled(0.25, 32, 10, stem_stride=1)


def _randomise_bn(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BN affine parameters and running statistics, so a wrong mapping cannot go unnoticed."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5, generator=gen)
            m.bias.data.normal_(0, 0.1, generator=gen)
            m.running_mean.normal_(0, 0.1, generator=gen)
            m.running_var.uniform_(0.5, 2.0, generator=gen)


@pytest.mark.parametrize("arch", [SPOS_ABS, PUBLISHED["PROXYLESS_ABS"][1], [5] * 21])
def test_network_equals_its_supernet_path(arch):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    supernet = MobileSuperNet(TINY)
    _randomise_bn(supernet, gen)
    net = MobileNetwork(TINY, arch)
    net.load_state_dict(path_state_dict(supernet.state_dict(), arch), strict=True)  # every key present, no extra
    supernet.eval(), net.eval()
    x = torch.randn(4, 3, 32, 32, generator=gen)
    with torch.no_grad():
        expected, got = supernet(x, arch), net(x)
    assert got.shape == (4, 10)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_identity_layers_are_removed_and_names_follow_the_supernet():
    with torch.device("meta"):
        net = MobileNetwork(GPU_SPACE, SPOS_ABS)
    kept = [i for i, op in enumerate(SPOS_ABS) if op != -1]
    assert list(net.layers.keys()) == [str(i) for i in kept] and kept == [0, 1, 3, 4, 7, 8] + list(range(10, 21))
    # layer 8 is op 5 (7x7, expansion 6): 56 -> 336 -> dw 7x7 -> 112
    block = net.layers["8"].conv
    assert block[0].weight.shape == (336, 56, 1, 1) and block[3].weight.shape == (336, 1, 7, 7)
    assert block[6].weight.shape == (112, 336, 1, 1)
    assert net.classifier.weight.shape == (1000, 1728) and net.dropout.p == 0.2
    # the same tensor names as the supernet path (minus the choice level)
    with torch.device("meta"):
        supernet = MobileSuperNet(GPU_SPACE)
    sup_keys = {k.replace(".ops.5.", ".") for k in supernet.state_dict() if k.startswith("layers.8.ops.5.")}
    assert {k for k in net.state_dict() if k.startswith("layers.8.")} == sup_keys


def test_dropout_only_in_training_mode():
    torch.manual_seed(0)
    net = MobileNetwork(TINY, SPOS_ABS, dropout=0.2)
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    net.dropout.train()  # BN stays in eval mode: only dropout makes the outputs differ
    with torch.no_grad():
        assert not torch.equal(net(x), a)


@pytest.mark.parametrize("name,expected_m", [("SPOS_ABS", 472.52), ("PROXYLESS_ABS", 470.69),
                                             # 325.07M in the original's CPU table, minus its phantom
                                             # 1x1 32->32 stem conv at 112x112 (spec §2.6)
                                             ("FAIRNAS_ABS", 325.07 - 32 * 32 * 112 * 112 / 1e6)])
def test_network_flops_and_params_match_the_spec_and_the_table(name, expected_m):
    space_name, arch = PUBLISHED[name]
    space = get_space(space_name)
    flops = counted_flops(space, arch)
    assert flops / 1e6 == pytest.approx(expected_m, abs=0.01)
    table = reference_table(space_name)
    assert flops == table.arch_flops(arch)
    with torch.device("meta"):
        assert sum(p.numel() for p in MobileNetwork(space, arch).parameters()) == table.arch_params(arch)


def test_wrong_length_is_refused():
    with pytest.raises(ValueError, match="20 layers"):
        MobileNetwork(GPU_SPACE, SPOS_ABS[:-1])
