"""Search spaces and FLOPs against hand-derived numbers and torch's own FLOP counter."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from anglenas.flops import FlopsTable
from anglenas.operations import Operations
from anglenas.spaces import get_space, reference_table
from anglenas.spaces.mobilenet import FAIRNAS_SPACE, GPU_SPACE, IDENTITY
from anglenas.spaces.mobilenet.supernet import MobileSuperNet

ROOT = Path(__file__).resolve().parents[1]

SPOS_ABS = [2, 2, -1, 0, 0, -1, -1, 0, 5, -1, 4, 4, 0, 0, 4, 2, 3, 4, 4, 4, 3]
PROXYLESS_ABS = [2, 2, -1, -1, 0, 2, 2, -1, 5, -1, 4, 4, 0, 0, 4, 2, 3, 4, 4, 4, 3]
FAIRNAS_ABS = [4, 2, 4, 2, 2, 2, 5, 2, 4, 4, 2, 2, 2, 4, 5, 4, 2, 2, 5]
ORIGINAL_FAIRNAS_STEM_OVERCOUNT = 32 * 32 * 112 * 112  # the phantom 1x1 32->32 conv at 112x112


def test_gpu_space_layers_match_spec_table():
    # (in, out, input resolution, stride, identity allowed), the original's backbone_info
    expected = ([(24, 32, 112, 2, False)] + [(32, 32, 56, 1, True)] * 3 + [(32, 56, 56, 2, False)]
                + [(56, 56, 28, 1, True)] * 3 + [(56, 112, 28, 2, False)] + [(112, 112, 14, 1, True)] * 3
                + [(112, 128, 14, 1, False)] + [(128, 128, 14, 1, True)] * 3 + [(128, 256, 14, 2, False)]
                + [(256, 256, 7, 1, True)] * 3 + [(256, 432, 7, 1, False)])
    got = [(layer.inp, layer.oup, layer.input_res, layer.stride, layer.identity_allowed) for layer in GPU_SPACE.layers]
    assert got == expected


def test_fairnas_space_layers_match_spec():
    res = [112, 56, 56] + [28] * 4 + [14] * 8 + [7] * 4
    outs = [32, 32, 40, 40, 40, 40, 80, 80, 80, 80, 96, 96, 96, 96, 192, 192, 192, 192, 320]
    assert [layer.input_res for layer in FAIRNAS_SPACE.layers] == res
    assert [layer.oup for layer in FAIRNAS_SPACE.layers] == outs
    assert not any(layer.identity_allowed for layer in FAIRNAS_SPACE.layers)


def test_space_sizes_and_operator_counts():
    gpu, fair = Operations.full(GPU_SPACE), Operations.full(FAIRNAS_SPACE)
    assert gpu.size == 6 ** 6 * 7 ** 15 and f"{gpu.size:.4g}" == "2.215e+17"
    assert gpu.num_operators == 141
    assert fair.size == 6 ** 19 and fair.num_operators == 114
    assert all(layer[-1] == IDENTITY for layer in gpu.ops if len(layer) == 7)


def test_pre_and_post_by_hand():
    g, c = reference_table("gpu"), reference_table("fairnas")
    # stem conv 3->40 s2 @112^2, dw 3x3 40ch @112^2, pw 40->24 @112^2
    assert g.pre == 3 * 40 * 9 * 112 ** 2 + 40 * 9 * 112 ** 2 + 40 * 24 * 112 ** 2 == 30_105_600
    # head 1x1 432->1728 @7^2 + linear (2*1728-1)*1000
    assert g.post == 432 * 1728 * 49 + (2 * 1728 - 1) * 1000 == 40_033_304
    assert c.pre == 3 * 32 * 9 * 112 ** 2 + 32 * 9 * 112 ** 2 + 32 * 16 * 112 ** 2
    assert c.pre + ORIGINAL_FAIRNAS_STEM_OVERCOUNT == 33_718_272  # the original table's value
    assert c.post == 320 * 1280 * 49 + (2 * 1280 - 1) * 1000 == 22_629_400


@pytest.mark.parametrize("layer,expected", [
    (0, [30.93, 61.87, 34.55, 69.09, 39.97, 79.93]), (1, [21.98, 43.95, 26.79, 53.59, 34.02, 68.04]),
    (4, [14.53, 29.05, 15.73, 31.46, 17.54, 35.07]), (5, [15.94, 31.87, 18.05, 36.09, 21.21, 42.41]),
    (8, [11.36, 22.72, 11.89, 23.77, 12.68, 25.36]), (9, [15.34, 30.69, 16.40, 32.80, 17.98, 35.96]),
    (12, [16.40, 32.80, 17.45, 34.90, 19.03, 38.07]), (13, [19.95, 39.89, 21.15, 42.30, 22.96, 45.91]),
    (16, [14.62, 29.24, 14.92, 29.84, 15.37, 30.75]), (17, [19.61, 39.21, 20.21, 40.42, 21.11, 42.22]),
    (20, [26.23, 52.46, 26.83, 53.66, 27.74, 55.47])])
def test_gpu_layer_table_matches_spec(layer, expected):
    got = [x / 1e6 for x in reference_table("gpu").layers[layer][:6]]  # [6] is identity: 0
    assert reference_table("gpu").layers[layer][-1] == 0
    assert got == pytest.approx(expected, abs=0.006)


def test_layer0_op0_by_hand():
    # 24->72 expand @112^2, dw 3x3 s2 72ch -> 56^2, project 72->32 @56^2
    assert reference_table("gpu").layers[0][0] == 24 * 72 * 112 ** 2 + 72 * 9 * 56 ** 2 + 72 * 32 * 56 ** 2


def test_published_architectures():
    g, c = reference_table("gpu"), reference_table("fairnas")
    assert round(g.arch_flops(SPOS_ABS) / 1e6, 2) == 472.52
    assert round(g.arch_flops(PROXYLESS_ABS) / 1e6, 2) == 470.69
    assert round((c.arch_flops(FAIRNAS_ABS) + ORIGINAL_FAIRNAS_STEM_OVERCOUNT) / 1e6, 2) == 325.07
    assert round(c.arch_flops(FAIRNAS_ABS) / 1e6, 2) == 312.22


def test_flops_range_of_the_gpu_space():
    g = reference_table("gpu")
    ops = GPU_SPACE.initial_operations()
    lo = [min(layer, key=lambda o: 0 if o == IDENTITY else g.layers[i][o]) for i, layer in enumerate(ops)]
    hi = [5] * 21
    assert g.arch_flops(lo) / 1e6 == pytest.approx(184.2, abs=0.05)
    assert g.arch_flops(hi) / 1e6 == pytest.approx(1038.4, abs=0.05)


def test_batch_flops_equals_single():
    g = reference_table("gpu")
    all_identity = [IDENTITY if layer.identity_allowed else 0 for layer in GPU_SPACE.layers]
    archs = np.array([SPOS_ABS, PROXYLESS_ABS, all_identity])
    assert list(g.batch_flops(archs)) == [g.arch_flops(a) for a in archs]


@pytest.mark.parametrize("space", [GPU_SPACE, FAIRNAS_SPACE, GPU_SPACE.scaled(0.25, 32, 10, stem_stride=1)])
def test_table_against_torch_flop_counter(space):
    """torch counts 2 FLOPs per MAC and in*out MACs for the linear; the table uses (2*in - 1)*out for it."""
    table = space.flops_table()
    rng = np.random.default_rng(0)
    with torch.device("meta"):
        model = MobileSuperNet(space)
    x = torch.empty(1, 3, space.input_size, space.input_size, device="meta")
    linear_fix = (space.head_channels - 1) * space.num_classes
    for _ in range(3):
        arch = [int(rng.choice(layer)) for layer in space.initial_operations()]
        with FlopCounterMode(display=False) as counter:
            model(x, arch)
        assert counter.get_total_flops() // 2 + linear_fix == table.arch_flops(arch)


def test_params_against_a_module_count():
    space = GPU_SPACE
    model = MobileSuperNet(space)
    arch = SPOS_ABS
    used = [model.stem, model.first_block, model.head, model.classifier]
    used += [model.layers[i].ops[op] for i, op in enumerate(arch) if op != IDENTITY]
    assert reference_table("gpu").arch_params(arch) == sum(p.numel() for m in used for p in m.parameters())


def test_table_json_round_trip(tmp_path):
    table = reference_table("fairnas")
    (tmp_path / "t.json").write_text(table.to_json())
    assert FlopsTable.load(tmp_path / "t.json") == table


def test_scaled_space_keeps_the_layer_structure():
    small = GPU_SPACE.scaled(0.25, 32, 10, stem_stride=1)
    assert small.num_layers == 21
    assert [layer.identity_allowed for layer in small.layers] == [layer.identity_allowed for layer in GPU_SPACE.layers]
    assert small.layers[0].input_res == 32 and small.num_classes == 10
    assert all(layer.oup % 8 == 0 for layer in small.layers)
    assert math.isclose(get_space(small.name).head_channels, 1728)


@pytest.mark.parametrize("arch, space, expected", [
    ("2 2 -1 0 0 -1 -1 0 5 -1 4 4 0 0 4 2 3 4 4 4 3", "gpu", "FLOPs: 472.52M"),  # the paper's SPOS+ABS
    ("FAIRNAS_ABS", "fairnas", "FLOPs: 312.22M"),  # 325.07M of the original minus its 12.85M stem over-count
])
def test_arch_flops_command(arch, space, expected):
    out = subprocess.run([sys.executable, str(ROOT / "utils/arch_flops.py"), "--space", space, "--arch", arch],
                         capture_output=True, text=True, check=True).stdout
    assert expected in out and "params:" in out


def test_arch_flops_command_rejects_a_wrong_length():
    res = subprocess.run([sys.executable, str(ROOT / "utils/arch_flops.py"), "--space", "gpu", "--arch", "0 1 2"],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "21 layers" in res.stderr
