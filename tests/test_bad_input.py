"""Bad input that must give one clear line (a UserError naming the problem and the fix), never a traceback."""
import json
import pickle

import pytest
import torch

from anglenas.checkpoint import load_checkpoint, save_checkpoint
from anglenas.errors import UserError
from anglenas.runtime import pick_device
from anglenas.searchers.spos.journal import read_search_state


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


class NotAllowed:
    """A Python object a weights-only load refuses."""


@pytest.mark.parametrize("write", [
    lambda p: p.write_bytes(b"\x00garbage, not a checkpoint" * 20),
    lambda p: p.write_bytes(pickle.dumps({"model": NotAllowed()})),
    lambda p: (save_checkpoint({"model": torch.zeros(1000)}, p), p.write_bytes(p.read_bytes()[:500])),
], ids=["garbage", "foreign-pickle", "cut-short"])
def test_a_file_that_is_no_checkpoint_of_ours_is_named_without_unsafe_advice(tmp_path, write):
    path = tmp_path / "checkpoint.pt"
    write(path)
    with pytest.raises(UserError) as err:
        load_checkpoint(path)
    message = _one_line(err)
    assert message.startswith(f"{path} is not a checkpoint of this project (")
    assert "pass a file written by anglenas, or delete it" in message
    assert "weights_only" not in message  # torch's own advice: load it with weights_only=False, running its code


@pytest.mark.parametrize("text,problem", [
    ("{\"config\": {}, \"fingerp", "not JSON"),
    ("[1, 2]", "a JSON list, not an object"),
    ("{\"config\": {}, \"fingerprint\": \"ab\"}", "field 'search' is missing"),
    ("{\"config\": {}, \"fingerprint\": \"ab\", \"search\": {\"epoch\": 1}}", "field 'search' lacks ['history'"),
])
def test_a_garbage_search_state_is_refused_with_the_way_out(tmp_path, text, problem):
    path = tmp_path / "search_state.json"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        read_search_state(path)
    message = _one_line(err)
    assert message.startswith(f"{path} is not a search state of this project: {problem}")
    assert message.endswith(f"delete it to restart the evolution from the results in "
                            f"{tmp_path / 'evaluations.jsonl'} (none is lost), or pass another --save")


def test_a_search_state_reads_back(tmp_path):
    state = {"config": {"seed": 0}, "fingerprint": "ab", "search": {k: [] for k in
                                                                     ("epoch", "population", "visited", "top",
                                                                      "history", "rng")}}
    (tmp_path / "s.json").write_text(json.dumps(state))
    assert read_search_state(tmp_path / "s.json") == state
    assert read_search_state(tmp_path / "missing.json") is None


@pytest.mark.parametrize("gpus,device,message", [
    (0, "cuda", "--device cuda: no CUDA GPU is visible here (torch.cuda.is_available() is False); pass --device "
                "cpu, or auto to use a GPU where there is one"),
    (0, "cuda:1", "--device cuda:1: no CUDA GPU is visible here"),
    (2, "cuda:2", "--device cuda:2: GPU 2 does not exist, this machine shows 2 (cuda:0 to cuda:1)"),
    (0, "gpu", "--device 'gpu' is not a device: pass cpu, cuda, cuda:N or auto"),
])
def test_a_device_that_is_not_there(monkeypatch, gpus, device, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    with pytest.raises(UserError) as err:
        pick_device(device)
    assert _one_line(err).startswith(message)


def test_devices_that_are_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu") and pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert pick_device("cuda", local_rank=3) == torch.device("cuda", 3)
    assert pick_device("cuda:1", local_rank=3) == torch.device("cuda", 1)


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\xff", b"a: [1, 2\n"])
def test_garbage_config(tmp_path, content):
    from anglenas.config import parse_config
    from anglenas.data import DataConfig

    (tmp_path / "c.yaml").write_bytes(content)
    with pytest.raises(UserError) as err:
        parse_config(DataConfig, ["--config", str(tmp_path / "c.yaml")])
    assert _one_line(err).startswith(f"config file {tmp_path / 'c.yaml'} ")
