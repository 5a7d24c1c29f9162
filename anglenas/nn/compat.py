"""Loading weights into a :class:`~anglenas.spaces.mobilenet.network.MobileNetwork`, including the original's
released checkpoints.

The original saved ``{"iters", "state_dict", "best_acc_top1", "optimizer"}`` from a DDP-wrapped model that its
FLOPs profiler had touched (its ``thop/`` copy, called by ``*/training/train_from_scratch.py``), so every key starts
with ``module.`` and every leaf module has two stray buffers ``total_ops`` / ``total_params``. Both are stripped. When
the remaining names differ from ours but the tensors have the same shapes in the same order (same architecture, other
module names), they are matched by position. Anything else is a :class:`UserError` naming the keys and shapes that do
not fit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from anglenas.checkpoint import load_checkpoint
from anglenas.errors import UserError

PROFILER_BUFFERS = ("total_ops", "total_params")
DDP_PREFIX = "module."
SHOWN = 4  # keys listed per kind of mismatch


def find_state_dict(ckpt: Any) -> dict[str, torch.Tensor]:
    """The weights inside a checkpoint: ours (``ema`` if present, else ``model``), the original's
    (``state_dict``) or a bare state dict."""
    if isinstance(ckpt, Mapping):
        for key in ("ema", "model", "state_dict"):
            value = ckpt.get(key)
            if isinstance(value, Mapping):
                inner = value.get("module") if key == "ema" else value  # WeightEma.state_dict()
                if isinstance(inner, Mapping):
                    return dict(inner)
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            return dict(ckpt)
    raise UserError("the checkpoint holds no weights (expected a state dict, or a dict with 'model', 'ema' or "
                    "'state_dict')")


def clean_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DDP ``module.`` prefixes and drop the profiler's ``total_ops`` / ``total_params`` buffers."""
    out = {}
    for key, value in state.items():
        while key.startswith(DDP_PREFIX):
            key = key[len(DDP_PREFIX):]
        if key.rsplit(".", 1)[-1] in PROFILER_BUFFERS:
            continue
        out[key] = value
    return out


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def _listed(keys: list[str]) -> str:
    more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def mismatch_report(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str:
    """One line naming the missing / unexpected keys and the shape mismatches ('' when they fit)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [f"{k} {_shape(given[k])} vs {_shape(v)}" for k, v in expected.items()
              if k in given and given[k].shape != v.shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_listed(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_listed(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es) (checkpoint vs model): {_listed(shapes)}")
    return "; ".join(parts)


def match_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint"
                     ) -> tuple[dict[str, torch.Tensor], bool]:
    """``state`` cleaned and renamed to ``model``'s keys; the flag says whether names were matched by position."""
    expected = model.state_dict()
    state = clean_state_dict(state)
    report = mismatch_report(expected, state)
    if not report:
        return state, False
    if len(state) == len(expected) and all(a.shape == b.shape for a, b in zip(state.values(), expected.values())):
        return dict(zip(expected, state.values())), True
    raise UserError(f"{source} does not match the architecture: {report}; check --arch, --space and "
                    f"--width_mult against the run that wrote it")


try:
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # numpy < 2
    from numpy.core.multiarray import scalar as _np_scalar

NUMPY_SCALAR_GLOBALS = [_np_scalar, np.dtype,
                        *(type(np.dtype(t)) for t in (np.float32, np.float64, np.int32, np.int64, np.bool_))]
"""What besides tensors an old checkpoint may hold (numpy scalars such as ``best_acc_top1``); data, not code."""


def read_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> Any:
    """Load a checkpoint of ours or of the original (weights-only unpickling that also allows numpy scalars)."""
    with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
        return load_checkpoint(path, device)


def load_weights(model: nn.Module, path: str | Path, device: torch.device | str = "cpu") -> str:
    """Load the weights of checkpoint ``path`` into ``model``; returns a note on how they were matched."""
    state, by_position = match_state_dict(model, find_state_dict(read_checkpoint(path, device)), str(path))
    model.load_state_dict(state)
    return f"loaded {len(state)} tensors from {path}" + (" (names differ: matched by position and shape)"
                                                         if by_position else "")
