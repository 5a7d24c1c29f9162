"""The search's files that make a killed search resumable: the evaluation journal and the saved search state.

The journal (``evaluations.jsonl``) has one line per request whose publish the broker confirmed (``sent``) and
one per result (``result``), each with the fingerprint of the supernet weights it belongs to. A line is written
only after the event happened, so a resumed search never waits for a request that was not published; a kill
between a confirmed publish and its ``sent`` line costs one duplicate evaluation at most (the orphan's result
carries an id the search does not know and is dropped).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from anglenas.errors import UserError
from anglenas.searchers.spos.evolution import Arch

STATE_KEYS = {"config": dict, "fingerprint": str, "search": dict}
SEARCH_KEYS = {"epoch", "population", "visited", "top", "history", "rng"}


def read_journal(path: Path, fingerprint: str) -> tuple[dict[Arch, float], dict[Arch, str]]:
    """(results, pending request ids) recorded for these weights; a line cut by a kill is ignored."""
    results: dict[Arch, float] = {}
    pending: dict[Arch, str] = {}
    if not path.is_file():
        return results, pending
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("fingerprint") != fingerprint:
            continue
        arch = tuple(rec["arch"])
        if rec["event"] == "result":
            results.setdefault(arch, float(rec["top1"]))
        elif rec["event"] == "sent":
            pending[arch] = rec["id"]
    return results, {a: i for a, i in pending.items() if a not in results}


class Journal:
    """Append-only record of sent requests and results, flushed to disk line by line."""

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self._fh = open(path, "a", buffering=1)

    def _write(self, rec: dict) -> None:
        self._fh.write(json.dumps({**rec, "fingerprint": self.fingerprint}) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def result(self, arch: Arch, top1: float) -> None:
        self._write({"event": "result", "arch": list(arch), "top1": top1})

    def sent(self, arch: Arch, request_id: str) -> None:
        self._write({"event": "sent", "arch": list(arch), "id": request_id})

    def close(self) -> None:
        self._fh.close()


def read_search_state(path: Path) -> dict | None:
    """The saved search state (``search_state.json``: config, fingerprint, search), or None if there is none.

    A file that is not such a state (cut, edited, another program's) is refused with the way out: deleting it
    restarts the evolution at generation 1 and reuses every result of the journal, so no evaluation is lost.
    """
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
        problem = _state_problem(state)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = f"not JSON ({exc})"
    if problem:
        raise UserError(f"{path} is not a search state of this project: {problem}; delete it to restart the "
                        f"evolution from the results in {path.parent / 'evaluations.jsonl'} (none is lost), or "
                        f"pass another --save")
    return state


def _state_problem(state) -> str:
    if not isinstance(state, dict):
        return f"a JSON {type(state).__name__}, not an object"
    for key, kind in STATE_KEYS.items():
        if not isinstance(state.get(key), kind):
            return f"field {key!r} is missing or not a {kind.__name__}"
    missing = sorted(SEARCH_KEYS - set(state["search"]))
    return f"field 'search' lacks {missing}" if missing else ""
