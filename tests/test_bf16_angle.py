"""bench/bf16_angle.py at a tiny size on the CPU: identical fp32 runs agree exactly (tau 1, every drop in common),
a bf16 run and a reseeded fp32 run are real, different runs measured the same way, and the comparison counts what
a hand count gives."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # as for a bench script

from bf16_angle import Run, compare, measure  # noqa: E402

TINY = dict(space_name="gpu", width_mult=0.1, stem_stride=2, batch=16, steps=3, sample_num=3, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_identical_precisions_give_the_same_ranking_and_drops():
    result = measure(**TINY, precisions=("fp32", "fp32"))
    assert result["operators"] == 141  # every (layer, op) of the gpu space: 6 * 6 + 15 * 7
    assert result["tau"] == 1.0 and result["max_abs_score_diff"] == 0.0
    assert result["drops_per_run"] == 7 == result["dropped_in_common"]  # the gpu space drops 7 a round
    assert result["dropped"][0] == result["dropped"][1]


def test_bf16_is_measured_against_fp32_beside_a_reseed():
    result = measure(**TINY, control_seed=1)
    assert result["precisions"] == ["fp32", "bf16"]
    assert result["max_abs_score_diff"] > 0  # bf16 trained other weights
    assert -1.0 <= result["tau"] <= 1.0 and 0 <= result["dropped_in_common"] <= result["drops_per_run"] == 7
    control = result["control"]
    assert control["seed"] == 1 and control["max_abs_score_diff"] > 0  # other initial weights, batches, paths
    assert -1.0 <= control["tau"] <= 1.0 and 0 <= control["dropped_in_common"] <= 7


def test_compare_counts_pairs_and_common_drops_by_hand():
    first = Run("fp32", 0, {(0, 1): 1.0, (0, 2): 2.0, (1, 0): 3.0, (1, 1): 4.0}, [(0, 1), (1, 0)], 0.0)
    other = Run("bf16", 0, {(0, 1): 1.5, (0, 2): 4.0, (1, 0): 3.0, (1, 1): 3.5}, [(0, 1), (0, 2)], 0.0)
    # of the 6 pairs, (01,02) (01,10) (01,11) (10,11) keep their order and (02,10) (02,11) swap; no ties:
    # tau = (4 - 2) / 6
    result = compare(first, other)
    assert result["tau"] == pytest.approx(1 / 3)
    assert result["max_abs_score_diff"] == 2.0 and result["dropped_in_common"] == 1
