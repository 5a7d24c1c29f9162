"""utils/get_flops_lookup_table.py: every registered space at its own size into --save_dir (default under runs/),
NB201's table against a hand count, nothing written when a space refuses the size, one-line errors."""
import json
import runpy
from pathlib import Path

import pytest

from anglenas.flops import FlopsTable
from anglenas.spaces import get_space, space_names

ROOT = Path(__file__).resolve().parents[1]
BEST_C10 = (3, 3, 3, 1, 3, 2)  # NB201 index 6111: four 3x3 convs, a skip and a 1x1 conv


@pytest.fixture(scope="module")
def main():
    return runpy.run_path(str(ROOT / "utils" / "get_flops_lookup_table.py"))["main"]


def _nb201_hand_count(classes=10, c=16, n=5, side=32):
    """NB201's network in the lookup tables' convention: conv multiply-accumulates, (2 * in - 1) * out for the
    classifier; params with every BN's affine pair. Reductions: 3x3 stride-2 conv_a + BN, 3x3 conv_b + BN, avg-pool
    and a 1x1 conv (no BN) on the shortcut."""
    def conv(c_in, c_out, k, res):
        return c_in * c_out * k * k * res * res, c_in * c_out * k * k

    pre = conv(3, c, 3, side)[0], conv(3, c, 3, side)[1] + 2 * c
    post_flops, post_params = (2 * 4 * c - 1) * classes, 2 * 4 * c + 4 * c * classes + classes
    for ch, res in ((2 * c, side // 2), (4 * c, side // 4)):
        for f, p in (conv(ch // 2, ch, 3, res), conv(ch, ch, 3, res), conv(ch // 2, ch, 1, res)):
            post_flops, post_params = post_flops + f, post_params + p
        post_params += 2 * ch * 2  # the BNs of conv_a and conv_b
    stages = ((c, side), (2 * c, side // 2), (4 * c, side // 4))
    op = {k: (n * sum(conv(ch, ch, k, res)[0] for ch, res in stages),
              n * sum(conv(ch, ch, k, res)[1] + 2 * ch for ch, res in stages)) for k in (1, 3)}
    return pre, (post_flops, post_params), op


def test_every_space_at_its_own_size_into_runs_by_default(main, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main([])
    folder = tmp_path / "runs" / "flops-tables"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # nothing in the current folder itself
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"op_flops_{s}.json" for s in space_names())
    assert len(capsys.readouterr().out.splitlines()) == len(space_names())
    for name in space_names():
        space = get_space(name)
        doc = json.loads((folder / f"op_flops_{name}.json").read_text())
        assert (doc["space"], doc["input_size"], doc["num_classes"], doc["stem_stride"]) == \
            (name, space.input_size, space.num_classes, space.stem_stride)
        assert len(doc["layers"]) == space.num_sites and len(doc["layers"][0]) == len(space.op_names)
    assert json.loads((folder / "op_flops_nb201.json").read_text())["stem_stride"] == 1
    assert json.loads((folder / "op_flops_gpu.json").read_text())["input_size"] == 224

    table = FlopsTable.load(folder / "op_flops_nb201.json")
    (pre, pre_params), (post, post_params), op = _nb201_hand_count()
    assert (table.pre, table.post) == (pre, post) == (442_368, 7_341_302)
    assert (table.pre_params, table.post_params) == (pre_params, post_params)
    # none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3 on every edge: only the convs cost
    assert table.layers == [[0, 0, op[1][0], op[3][0], 0]] * 6 and op[3][0] == 35_389_440
    assert table.layer_params == [[0, 0, op[1][1], op[3][1], 0]] * 6
    assert table.arch_flops(BEST_C10) == pre + post + 4 * op[3][0] + op[1][0] == 153_273_590


def test_a_scaled_table_and_its_hand_count(main, tmp_path):
    main(["--space", "nb201", "--num_classes", "100", "--save_dir", str(tmp_path)])
    table = FlopsTable.load(tmp_path / "op_flops_nb201.json")
    (pre, pre_params), (post, post_params), op = _nb201_hand_count(classes=100)
    assert (table.num_classes, table.pre, table.post, table.post_params) == (100, pre, post, post_params)
    main(["--space", "gpu", "--width_mult", "0.25", "--input_size", "32", "--num_classes", "10", "--stem_stride", "1",
          "--save_dir", str(tmp_path)])
    doc = json.loads((tmp_path / "op_flops_gpu.json").read_text())
    assert (doc["width_mult"], doc["input_size"], doc["num_classes"], doc["stem_stride"]) == (0.25, 32, 10, 1)


def test_a_size_a_space_refuses_writes_nothing_and_bad_flags_are_one_line(main, tmp_path, capsys):
    out = tmp_path / "tables"
    with pytest.raises(SystemExit) as exit_:
        main(["--stem_stride", "2", "--save_dir", str(out)])  # every space, nb201's stem is stride 1
    assert exit_.value.code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert err.startswith("error: the nb201 space has a stride-1 stem") and "stem_stride 2" in err
    assert err.count("\n") == 1
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for argv, word in [(["--save_dir", str(blocker / "tables")], f"'{blocker}' is a file, not a folder"),
                       (["--input_size", "3"], "--input_size"), (["--width_mult", "0"], "--width_mult"),
                       (["--space", "nope"], "--space")]:
        with pytest.raises(SystemExit) as exit_:
            main(["--space", "nb201", *argv] if argv[0] != "--space" else argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and word in err, err
