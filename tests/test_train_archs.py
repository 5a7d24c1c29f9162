"""Architecture parsing and checking (anglenas.archs) against the original's table and layer rules."""
import json

import pytest

from anglenas.archs import check_arch, parse_arch, published
from anglenas.errors import UserError
from anglenas.spaces import get_space

SPOS_STR = "2 2 -1 0 0 -1 -1 0 5 -1 4 4 0 0 4 2 3 4 4 4 3"


def arch_of(s):
    return [int(t) for t in s.split()]


def test_published_match_spec_table():
    # the original's training/script.sh encodings
    assert published()["SPOS_ABS"] == ("gpu", [int(t) for t in SPOS_STR.split()])
    assert published()["FAIRNAS_ABS"] == ("fairnas", [int(t) for t in "4 2 4 2 2 2 5 2 4 4 2 2 2 4 5 4 2 2 5".split()])
    assert published()["PROXYLESS_ABS"] == ("gpu", [int(t) for t in
                                                  "2 2 -1 -1 0 2 2 -1 5 -1 4 4 0 0 4 2 3 4 4 4 3".split()])
    for space, arch in published().values():
        assert check_arch(arch, space) == arch


def test_parse_string_infers_space_from_length():
    space, arch = parse_arch(SPOS_STR)
    assert space == "gpu" and len(arch) == 21 and arch[2] == -1 and get_space("gpu").format_arch(arch) == SPOS_STR
    space, arch = parse_arch("4 2 4 2 2 2 5 2 4 4 2 2 2 4 5 4 2 2 5")
    assert space == "fairnas" and len(arch) == 19
    assert parse_arch("[" + SPOS_STR.replace(" ", ", ") + "]") == ("gpu", arch_of(SPOS_STR))


def test_parse_published_name_case_insensitive():
    assert parse_arch("spos_abs") == published()["SPOS_ABS"]
    assert parse_arch("FAIRNAS_ABS", space="fairnas") == published()["FAIRNAS_ABS"]
    with pytest.raises(UserError, match="gpu space, not to fairnas"):
        parse_arch("SPOS_ABS", space="fairnas")


def test_parse_search_result_json(tmp_path):
    second = arch_of("2 2 -1 -1 0 2 2 -1 5 -1 4 4 0 0 4 2 3 4 4 4 3")
    doc = {"format": "anglenas-search-result", "version": 1, "space": "gpu", "operations": [],
           "flops_limits": [None, 475.0],
           "top": [{"arch": arch_of(SPOS_STR), "arch_str": SPOS_STR, "top1": 61.2},
                   {"arch": second, "arch_str": get_space("gpu").format_arch(second), "top1": 60.0}]}
    path = tmp_path / "search_result.json"
    path.write_text(json.dumps(doc))
    assert parse_arch(str(path)) == ("gpu", arch_of(SPOS_STR))
    assert parse_arch(str(path), rank=1) == ("gpu", second)
    assert parse_arch(str(tmp_path)) == ("gpu", arch_of(SPOS_STR))  # the folder holding it
    with pytest.raises(UserError, match="rank 2 is out of range"):
        parse_arch(str(path), rank=2)
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(UserError, match="not a search result"):
        parse_arch(str(path))
    with pytest.raises(UserError, match="does not exist"):
        parse_arch(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("value,space,message", [
    ("2 2 -1 0 0", None, "no search space has 5 layers"),
    ("2 2 -1 0 0", "gpu", "has 5 op indices but the gpu space has 21 layers"),
    (SPOS_STR.replace("5", "6", 1), None, "layer 8: op index 6 is out of range"),
    (SPOS_STR.replace("-1", "-2", 1), None, "layer 2: op index -2 is out of range"),
    ("-1" + SPOS_STR[1:], None, "layer 0: identity"),   # the first layer of stage 1 changes the shape
    ("4 2 4 2 -1 2 5 2 4 4 2 2 2 4 5 4 2 2 5", None, "layer 4: identity .* no identity op"),
    ("not an arch", None, "cannot read architecture"),
])
def test_bad_architectures_are_user_errors(value, space, message):
    with pytest.raises(UserError, match=message):
        parse_arch(value, space=space)


def test_identity_rules_follow_stage_boundaries():
    # identity is legal exactly in the 15 GPU layers that keep the shape (the original's stage_last_id)
    first_of_stage = {0, 4, 8, 12, 16, 20}
    base = [0] * 21
    for layer in range(21):
        arch = base.copy()
        arch[layer] = -1
        if layer in first_of_stage:
            with pytest.raises(UserError):
                check_arch(arch, "gpu")
        else:
            assert check_arch(arch, "gpu") == arch
