"""Atomic checkpoint and file writes: a crash mid-write never leaves a truncated file behind."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Collection, Iterator

import torch

from anglenas.config import to_yaml
from anglenas.errors import UserError


def _umask() -> int:
    """The process's umask (Python has no getter: set a harmless one and put it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_replace(path: Path, write) -> None:
    """Write ``path`` through a temporary file in its folder and an atomic rename; the file gets the mode of a
    plain ``open(path, "w")`` (0666 less the umask), not ``mkstemp``'s private 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    _atomic_replace(Path(path), lambda fh: fh.write(text.encode()))


def save_checkpoint(obj: Any, path: str | Path) -> None:
    """``torch.save`` ``obj`` atomically (tensors, numbers, strings, lists and dicts only)."""
    _atomic_replace(Path(path), lambda fh: torch.save(obj, fh))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only``: no code runs on load)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing on foreign files
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise UserError(f"{path} is not a checkpoint of this project ({_load_problem(exc)}): it is cut short, "
                        f"damaged or another program's file; pass a file written by anglenas, or delete it to "
                        f"start that stage anew") from None


def _load_problem(exc: Exception) -> str:
    """What torch.load found, without torch's advice to load untrusted files with ``weights_only=False``."""
    text = " ".join(str(exc).split())
    if "weights_only" in text or "Weights only" in text:
        return "it holds Python objects besides tensors, numbers, strings, lists and dicts, and loading them " \
               "could run code"
    return f"{type(exc).__name__}: {text.split('. ')[0][:150]}"


def check_same_settings(saved: dict, current: dict, folder: str | Path) -> None:
    """Refuse to resume the run in ``folder`` when settings that change its result differ from the saved ones."""
    diff = {k: (v, current.get(k)) for k, v in saved.items() if current.get(k) != v}
    if diff:
        shown = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(diff.items()))
        raise UserError(f"{folder} holds a run with other settings ({shown}); rerun with the same arguments to "
                        f"resume, or pass another --save")


def run_settings(cfg: Any, resumable: Collection[str]) -> dict:
    """The fields of config dataclass ``cfg`` that change a run's result: all but ``resumable``."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in resumable}


def open_run(path: str | Path, cfg: Any, resumable: Collection[str], is_main: bool = True,
             map_location: str | torch.device = "cpu") -> dict | None:
    """The checkpoint at ``path`` of a run to resume, after checking that its settings (saved under ``"config"``)
    equal ``run_settings(cfg, resumable)``; or None for a new run, whose folder the main rank then creates with a
    ``config.yaml`` of ``cfg``."""
    path = Path(path)
    if not path.is_file():
        if is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path.parent / "config.yaml", to_yaml(cfg))
        return None
    ckpt = load_checkpoint(path, map_location=map_location)
    check_same_settings(ckpt["config"], run_settings(cfg, resumable), path.parent)
    return ckpt


def check_writable(path: str | Path, what: str, flag: str, *, folder: bool | None = None) -> None:
    """Fail at start, in one line, when ``path`` cannot be written: better than a traceback after hours of work.
    ``path`` is a folder (``folder`` True; by default when ``what`` ends in "folder") or a file. The check creates
    the missing folders and a file, as the run will, and removes them again: a run refused afterwards for bad input
    leaves nothing behind (its stage creates the run folder once its inputs are checked). The one check of every
    entry point's outputs."""
    path = Path(path)
    is_folder = what.endswith("folder") if folder is None else folder
    target = path if is_folder else path.parent
    blocker = next((p for p in (target, *target.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise UserError(f"cannot write the {what} {str(path)!r}: {str(blocker)!r} is a file, not a folder; pass a "
                        f"writable {flag}")
    if not is_folder and path.is_dir():
        raise UserError(f"the {what} {str(path)!r} is a folder; pass a file path with {flag}")
    created: list[Path] = []
    try:
        for missing in reversed([p for p in (target, *target.parents) if not p.exists()]):
            try:
                missing.mkdir()
            except FileExistsError:  # another process (a parallel job of the same table) made it meanwhile
                continue
            except OSError as exc:
                raise UserError(f"cannot write the {what} {str(path)!r}: creating the folder {str(target)!r} failed "
                                f"({exc.strerror or exc}); pass a writable {flag}") from None
            created.append(missing)
        try:
            fd, probe = tempfile.mkstemp(dir=target, prefix=".write-test-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise UserError(f"cannot write the {what} {str(path)!r}: creating a file in {str(target)!r} failed "
                            f"({exc.strerror or exc}); pass a writable {flag}") from None
    finally:
        for made in reversed(created):  # deepest first; one that another process filled meanwhile stays
            try:
                made.rmdir()
            except OSError:
                pass


SETUP_FILES = frozenset({"log.txt", "config.yaml", "tb"})
"""What a run writes into its folder while it sets up, before any work: its log, TensorBoard's folder, its settings."""


@contextlib.contextmanager
def removed_if_refused(folder: str | Path, setup_files: Collection[str] = ()) -> Iterator[None]:
    """Run the block; when a :class:`UserError` refuses the run inside it, remove ``folder`` again if the block
    created it and it holds nothing but what a set-up writes (:data:`SETUP_FILES`, ``setup_files``, empty
    folders), with the parents created for it. Bad input found while a stage sets up (a data folder that is not
    there, a batch larger than the data) leaves no run folder behind; a run that saved work keeps it."""
    folder = Path(folder)
    new = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        yield
    except UserError:
        keep = SETUP_FILES | set(setup_files)
        if new and folder.is_dir() and all(p.is_dir() or keep.intersection(p.relative_to(folder).parts)
                                           for p in folder.rglob("*")):
            shutil.rmtree(folder, ignore_errors=True)
            for parent in new[1:]:  # the parents made for it, while empty
                try:
                    parent.rmdir()
                except OSError:
                    break
        raise
