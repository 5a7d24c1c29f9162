"""Messages between the search and its test servers: JSON with a format name and a schema version, never pickle.

A request asks for one candidate's top-1 under one set of supernet weights::

    {"format": "anglenas-eval-request", "version": 1, "id": "<hex>", "arch": [2, 2, -1, ...],
     "weights": "/nfs/runs/spos/supernet.pt", "fingerprint": "<sha256 prefix>", "settings": {...EvalSettings...},
     "reply_to": "<result queue>"}

and its result carries the same id, arch and fingerprint::

    {"format": "anglenas-eval-result", "version": 1, "id": "<hex>", "arch": [...], "fingerprint": "...",
     "top1": 61.25, "seconds": 3.1, "server": "host:pid", "redelivered": false}

Every field is checked on receipt; anything else raises :class:`MessageError` with the reason.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

VERSION = 1
REQUEST = "anglenas-eval-request"
RESULT = "anglenas-eval-result"


class MessageError(ValueError):
    """A message that is not valid JSON of a known format and version, or has ill-typed fields."""


def weights_fingerprint(path: str | Path) -> str:
    """SHA-256 (first 16 hex digits) of the weights file: equal fingerprints mean identical weights."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def encode(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def make_request(request_id: str, arch: list[int], weights: str, fingerprint: str, settings: dict,
                 reply_to: str) -> dict:
    return {"format": REQUEST, "version": VERSION, "id": request_id, "arch": [int(a) for a in arch],
            "weights": weights, "fingerprint": fingerprint, "settings": settings, "reply_to": reply_to}


def make_result(request: dict, top1: float, seconds: float, server: str, redelivered: bool) -> dict:
    return {"format": RESULT, "version": VERSION, "id": request["id"], "arch": request["arch"],
            "fingerprint": request["fingerprint"], "top1": float(top1), "seconds": float(seconds),
            "server": server, "redelivered": bool(redelivered)}


_REQUEST_FIELDS = {"id": str, "arch": list, "weights": str, "fingerprint": str, "settings": dict, "reply_to": str}
_RESULT_FIELDS = {"id": str, "arch": list, "fingerprint": str, "top1": (int, float), "seconds": (int, float),
                  "server": str, "redelivered": bool}


def _decode(body: bytes, fmt: str, fields: dict[str, Any]) -> dict:
    try:
        msg = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"not JSON ({exc})") from None
    if not isinstance(msg, dict):
        raise MessageError(f"a JSON {type(msg).__name__}, not an object")
    if msg.get("format") != fmt:
        raise MessageError(f"unknown format {msg.get('format')!r} (expected {fmt!r})")
    if msg.get("version") != VERSION:
        raise MessageError(f"{fmt} version {msg.get('version')!r} is not supported (expected {VERSION})")
    for name, kind in fields.items():
        if name not in msg:
            raise MessageError(f"field {name!r} is missing")
        value = msg[name]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise MessageError(f"field {name!r} has type {type(value).__name__}")
    arch = msg["arch"]
    if not arch or not all(isinstance(a, int) and not isinstance(a, bool) and a >= -1 for a in arch):
        raise MessageError("field 'arch' must be a non-empty list of op indices >= -1")
    if not msg["id"] or not msg["fingerprint"]:
        raise MessageError("fields 'id' and 'fingerprint' may not be empty")
    return msg


def decode_request(body: bytes) -> dict:
    """The request in ``body``; raises :class:`MessageError` naming what is wrong."""
    return _decode(body, REQUEST, _REQUEST_FIELDS)


def decode_result(body: bytes) -> dict:
    """The result in ``body``; raises :class:`MessageError` naming what is wrong."""
    msg = _decode(body, RESULT, _RESULT_FIELDS)
    if not math.isfinite(msg["top1"]) or not 0.0 <= msg["top1"] <= 100.0:
        raise MessageError(f"top1 {msg['top1']!r} is not a percentage")
    return msg
