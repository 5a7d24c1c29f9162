"""Written files get the mode of a plain open() (0666 less the umask), atomically; check_writable gives one line
for every way an output path can be unwritable."""
import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from anglenas.checkpoint import atomic_write_text, check_writable, load_checkpoint, open_run, save_checkpoint
from anglenas.config import field
from anglenas.errors import UserError


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@dataclass
class TinyConfig:
    lr: float = field(0.1, "learning rate")


class FailsToPickle:
    def __reduce__(self):
        raise RuntimeError("fails mid-write")


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_get_0666_less_the_umask(tmp_path, mask, expected):
    with umask(mask):
        atomic_write_text(tmp_path / "operations.json", "[[0, 1]]\n")
        save_checkpoint({"step": 3}, tmp_path / "ckpt" / "checkpoint.pt")
        open_run(tmp_path / "run" / "checkpoint.pt", TinyConfig(), resumable=())
        atomic_write_text(tmp_path / "operations.json", "[[1]]\n")  # replacing a file keeps the rule
    for path in ("operations.json", "ckpt/checkpoint.pt", "run/config.yaml"):
        assert mode(tmp_path / path) == expected, path
    assert (tmp_path / "operations.json").read_text() == "[[1]]\n"
    assert load_checkpoint(tmp_path / "ckpt" / "checkpoint.pt") == {"step": 3}
    assert (tmp_path / "run" / "config.yaml").read_text() == "lr: 0.1\n"
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    atomic_write_text(tmp_path / "summary.json", "old")
    with pytest.raises(RuntimeError, match="fails mid-write"):
        save_checkpoint({"bad": FailsToPickle()}, tmp_path / "summary.json")
    assert (tmp_path / "summary.json").read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_check_writable_folder_and_file_leave_nothing_behind(tmp_path):
    """The check creates what is missing, as the run will, and removes it again: a run refused afterwards for bad
    input leaves no folder behind."""
    check_writable(tmp_path / "a" / "b", "run folder", "--save")
    assert not (tmp_path / "a").exists()
    check_writable(tmp_path / "c" / "operations.json", "operations file", "--operations_path")
    assert not (tmp_path / "c").exists()
    check_writable(tmp_path / "d", "output", "--out", folder=True)  # `folder` names the kind explicitly
    assert not (tmp_path / "d").exists()
    (tmp_path / "e").mkdir()
    check_writable(tmp_path / "e", "run folder", "--save")  # an existing folder (a run to resume) stays as it was
    assert (tmp_path / "e").is_dir() and list(tmp_path.iterdir()) == [tmp_path / "e"]
    assert list((tmp_path / "e").iterdir()) == []



def test_check_writable_accepts_a_folder_a_parallel_job_creates_meanwhile(tmp_path, monkeypatch):
    """Two jobs of one table (compare_searchers --parallel 2) check sibling run folders under one new parent: the
    parent the other job made between the look and the mkdir is not an error, and it stays (it is the other's)."""
    real_mkdir = Path.mkdir

    def racing_mkdir(self, *args, **kwargs):
        if self == tmp_path / "seed-0":
            real_mkdir(self)  # the other job wins the race
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    check_writable(tmp_path / "seed-0" / "shrink-0.25", "run folder", "--save")
    assert (tmp_path / "seed-0").is_dir() and not (tmp_path / "seed-0" / "shrink-0.25").exists()

def _one_line_error(call, *words):
    with pytest.raises(UserError) as exc:
        call()
    message = str(exc.value)
    assert "\n" not in message and all(w in message for w in words), message
    return message


def test_check_writable_names_the_problem_in_one_line(tmp_path):
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    # a path under a regular file (mkdir would raise NotADirectoryError)
    _one_line_error(lambda: check_writable(regular / "run", "run folder", "--save"),
                    "cannot write the run folder", f"'{regular}' is a file, not a folder", "--save")
    _one_line_error(lambda: check_writable(regular / "sub" / "ops.json", "operations file", "--operations_path"),
                    "cannot write the operations file", f"'{regular}' is a file", "--operations_path")
    # the folder itself is a file
    _one_line_error(lambda: check_writable(regular, "run folder", "--save"), f"'{regular}' is a file")
    # a file path that is a folder
    _one_line_error(lambda: check_writable(tmp_path, "operations file", "--operations_path"),
                    "is a folder; pass a file path with --operations_path")
    # folders where nothing can be written, even by root: /proc holds no user files
    _one_line_error(lambda: check_writable("/proc/anglenas-run", "run folder", "--save"),
                    "cannot write the run folder '/proc/anglenas-run'", "creating the folder", "--save")
    _one_line_error(lambda: check_writable("/proc/table.json", "lookup table", "--save_dir"),
                    "creating a file in '/proc' failed", "--save_dir")
    assert not list(tmp_path.glob("**/.write-test-*"))


def test_torch_checkpoints_and_text_share_one_writer(tmp_path):
    with umask(0o077):  # a private umask gives private files: the writer follows the umask, not a fixed mode
        save_checkpoint({"w": torch.ones(2)}, tmp_path / "private.pt")
    assert mode(tmp_path / "private.pt") == 0o600
