"""bench/bf16_angle.py at a tiny size on the CPU: identical fp32 runs agree exactly (tau 1, every drop in common),
and a bf16 run is a real, different run measured the same way."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # as for a bench script

from bf16_angle import measure  # noqa: E402

TINY = dict(space_name="gpu", width_mult=0.1, stem_stride=2, batch=16, steps=3, sample_num=3, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_identical_precisions_give_the_same_ranking_and_drops():
    result = measure(**TINY, precisions=("fp32", "fp32"))
    assert result["operators"] == 141  # every (layer, op) of the gpu space: 6 * 6 + 15 * 7
    assert result["tau"] == 1.0 and result["max_abs_score_diff"] == 0.0
    assert result["drops_per_run"] == 7 == result["dropped_in_common"]  # the gpu space drops 7 a round
    assert result["dropped"][0] == result["dropped"][1]


def test_bf16_is_measured_against_fp32():
    result = measure(**TINY)
    assert result["precisions"] == ["fp32", "bf16"]
    assert result["max_abs_score_diff"] > 0  # bf16 trained other weights
    assert -1.0 <= result["tau"] <= 1.0 and 0 <= result["dropped_in_common"] <= result["drops_per_run"] == 7
