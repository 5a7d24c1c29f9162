"""The operations file: JSON round trip, the original's pickle, refusal of anything else, validation."""
import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

from anglenas.errors import UserError
from anglenas.operations import Operations, load_operations
from anglenas.spaces.mobilenet import FAIRNAS_SPACE, GPU_SPACE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shrunk_gpu_ops():
    ops = GPU_SPACE.initial_operations()
    ops[1], ops[3], ops[20] = [2, -1], [-1], [4]
    return ops


def test_json_round_trip_and_readable_layout(tmp_path):
    ops = Operations(GPU_SPACE, shrunk_gpu_ops())
    ops.save(tmp_path / "ops.json")
    text = (tmp_path / "ops.json").read_text()
    doc = json.loads(text)
    assert list(doc) == ["format", "version", "space", "op_names", "operations"]
    assert doc["space"] == "gpu" and doc["operations"][1] == [2, -1] and doc["op_names"]["-1"] == "identity"
    assert "\n    [2, -1],\n" in text  # one layer per line
    loaded = load_operations(tmp_path / "ops.json")
    assert loaded.ops == ops.ops and loaded.space.name == "gpu"
    assert loaded.size == 6 ** 5 * 7 ** 13 * 2 * 1 * 1


def test_original_pickle_with_numpy_ints(tmp_path):
    ops = [[np.int64(o) for o in layer] for layer in FAIRNAS_SPACE.initial_operations()]
    (tmp_path / "shrunk_search_space.pt").write_bytes(pickle.dumps(ops))
    loaded = load_operations(tmp_path / "shrunk_search_space.pt")
    assert loaded.space.name == "fairnas" and loaded.ops == FAIRNAS_SPACE.initial_operations()
    assert all(type(o) is int for layer in loaded.ops for o in layer)


def test_original_pickle_of_plain_ints_protocol_2(tmp_path):
    (tmp_path / "o.pt").write_bytes(pickle.dumps(shrunk_gpu_ops(), protocol=2))
    assert load_operations(tmp_path / "o.pt").ops == shrunk_gpu_ops()


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/anglenas-pwned",))


@pytest.mark.parametrize("payload", [[_Exploit()], {"a": 1}, [[1.5, 2]], [["x"]]])
def test_refuses_other_pickles(tmp_path, payload):
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(payload))
    with pytest.raises(UserError):
        load_operations(tmp_path / "evil.pt")
    assert not os.path.exists("/tmp/anglenas-pwned")


@pytest.mark.parametrize("mutate,message", [
    (lambda ops: ops.pop(), "has 21 layers"),
    (lambda ops: ops[4].clear(), "layer 4 of the operations list is empty"),
    (lambda ops: ops[0].append(-1), "layer 0 has op(s) [-1] not allowed"),
    (lambda ops: ops[2].append(9), "layer 2 has op(s) [9]"),
    (lambda ops: ops[2].append(0), "lists an op twice"),
])
def test_validation_errors(mutate, message):
    ops = GPU_SPACE.initial_operations()
    mutate(ops)
    with pytest.raises(UserError, match=re.escape(message)):
        Operations(GPU_SPACE, ops)


def test_space_mismatch_and_unknown_layer_count(tmp_path):
    Operations(GPU_SPACE, shrunk_gpu_ops()).save(tmp_path / "g.json")
    with pytest.raises(UserError, match="describes the gpu space"):
        load_operations(tmp_path / "g.json", "fairnas")
    (tmp_path / "p.pt").write_bytes(pickle.dumps([[0]] * 5))
    with pytest.raises(UserError, match="no search space has 5 layers"):
        load_operations(tmp_path / "p.pt")


def run_show_space(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "utils", "show_space.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_show_space_command(tmp_path):
    (tmp_path / "o.pt").write_bytes(pickle.dumps([[np.int64(o) for o in layer] for layer in shrunk_gpu_ops()]))
    out = run_show_space(tmp_path / "o.pt")
    assert out.returncode == 0, out.stderr
    assert "space: gpu (21 layers)" in out.stdout
    assert "layer  1: mobilenet_5x5_ratio_3, identity" in out.stdout
    assert f"({6 ** 5 * 7 ** 13 * 2})" in out.stdout


@pytest.mark.parametrize("content", [b"", b"not a pickle", b'{"format": "anglenas-operations", "version": 1, '
                                     b'"space": "gpu", "operations": [[]]}'])
def test_show_space_refuses_bad_files_in_one_line(tmp_path, content):
    (tmp_path / "bad").write_bytes(content)
    out = run_show_space(tmp_path / "bad")
    assert out.returncode != 0
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
