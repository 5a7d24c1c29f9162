"""The stand-alone network against the supernet path it comes from and the original's FLOPs / layout numbers."""
import numpy as np
import pytest
import torch

from anglenas.archs import published
from anglenas.errors import UserError
from anglenas.nn.compat import clean_state_dict, load_weights
from anglenas.spaces import get_space, reference_table
from anglenas.spaces.mobilenet import GPU_SPACE
from anglenas.spaces.mobilenet.network import MobileNetwork, path_state_dict
from anglenas.spaces.mobilenet.supernet import MobileSuperNet

SPOS_ABS = published()["SPOS_ABS"][1]
TINY = GPU_SPACE.scaled(0.25, 32, 10, stem_stride=1)


def _randomise_bn(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BN affine parameters and running statistics, so a wrong mapping cannot go unnoticed."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5, generator=gen)
            m.bias.data.normal_(0, 0.1, generator=gen)
            m.running_mean.normal_(0, 0.1, generator=gen)
            m.running_var.uniform_(0.5, 2.0, generator=gen)


@pytest.mark.parametrize("arch", [SPOS_ABS, published()["PROXYLESS_ABS"][1], [5] * 21])
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
                                             # 1x1 32->32 stem conv at 112x112 (flops_lookup_table_cpu.py)
                                             ("FAIRNAS_ABS", 325.07 - 32 * 32 * 112 * 112 / 1e6)])
def test_network_flops_and_params_match_the_spec_and_the_table(name, expected_m):
    space_name, arch = published()[name]
    space = get_space(space_name)
    flops = space.counted_flops(arch)
    assert flops / 1e6 == pytest.approx(expected_m, abs=0.01)
    table = reference_table(space_name)
    assert flops == table.arch_flops(arch)
    with torch.device("meta"):
        assert sum(p.numel() for p in MobileNetwork(space, arch).parameters()) == table.arch_params(arch)


def test_wrong_length_is_refused():
    with pytest.raises(ValueError, match="20 layers"):
        MobileNetwork(GPU_SPACE, SPOS_ABS[:-1])


def _original_style_checkpoint(net: MobileNetwork) -> dict:
    """What the original saved: DDP keys, thop's buffers on every leaf module, iters / optimizer alongside."""
    state = {}
    for name, module in net.named_modules():
        for key, value in module.state_dict(keep_vars=False).items():
            if "." not in key:  # the module's own tensors
                state[f"module.{name}.{key}"] = value.clone()
        if not list(module.children()):
            state[f"module.{name}.total_ops"] = torch.zeros(1, dtype=torch.float64)
            state[f"module.{name}.total_params"] = torch.zeros(1, dtype=torch.float64)
    return {"iters": np.int64(300000), "state_dict": state, "best_acc_top1": np.float64(75.97),
            "optimizer": {"state": {}}}


def test_original_checkpoint_loads_after_stripping(tmp_path):
    torch.manual_seed(1)
    source = MobileNetwork(TINY, SPOS_ABS).eval()
    _randomise_bn(source, torch.Generator().manual_seed(1))
    ckpt = _original_style_checkpoint(source)
    assert sum(k.endswith("total_ops") for k in ckpt["state_dict"]) > 50
    torch.save(ckpt, tmp_path / "original.pth.tar")
    target = MobileNetwork(TINY, SPOS_ABS).eval()
    note = load_weights(target, tmp_path / "original.pth.tar")
    assert "by position" not in note
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_other_names_same_shapes_are_matched_by_position(tmp_path):
    torch.manual_seed(2)
    source = MobileNetwork(TINY, SPOS_ABS).eval()
    renamed = {f"features.{i}.t": v for i, v in enumerate(source.state_dict().values())}
    torch.save({"state_dict": renamed}, tmp_path / "renamed.pt")
    target = MobileNetwork(TINY, SPOS_ABS).eval()
    assert "by position" in load_weights(target, tmp_path / "renamed.pt")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_mismatched_checkpoint_names_keys_and_shapes(tmp_path):
    torch.save({"state_dict": MobileNetwork(TINY, SPOS_ABS).state_dict()}, tmp_path / "spos.pt")
    other_op = SPOS_ABS.copy()
    other_op[8] = 1  # 3x3 expansion 6 instead of 7x7 expansion 6: only the depthwise kernel differs
    with pytest.raises(UserError, match=r"1 shape mismatch\(es\) \(checkpoint vs model\): "
                                        r"layers\.8\.conv\.3\.weight 96x1x7x7 vs 96x1x3x3"):
        load_weights(MobileNetwork(TINY, other_op), tmp_path / "spos.pt")
    other_identity = SPOS_ABS.copy()
    other_identity[3] = -1  # layer 3 dropped: its tensors are unexpected
    with pytest.raises(UserError, match=r"unexpected key\(s\): layers\.3\.conv\.0\.weight"):
        load_weights(MobileNetwork(TINY, other_identity), tmp_path / "spos.pt")


def test_clean_state_dict_strips_prefixes_and_profiler_buffers():
    state = {"module.stem.0.weight": torch.ones(1), "module.stem.0.total_ops": torch.zeros(1),
             "module.module.head.0.weight": torch.ones(2), "classifier.total_params": torch.zeros(1)}
    assert list(clean_state_dict(state)) == ["stem.0.weight", "head.0.weight"]
