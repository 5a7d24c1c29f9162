"""The hardware term of ProxylessNAS: an expected cost under the architecture distribution and its loss.

A :class:`CostTable` holds a fixed cost (everything outside the searchable layers) and the cost of each candidate
of each layer; ``E[cost] = fixed + sum_layers sum_k p_k * cost[layer][k]`` is differentiable in the architecture
parameters. Two sources:

- ``--target_hardware flops``: the space's FLOPs table at the paper's size (spec §2.6), reference 475M FLOPs.
- ``--target_hardware FILE``: a latency lookup table the user measured on the target device (nothing is
  downloaded, unlike the original, which fetched a YAML table at start-up). JSON::

      {"format": "anglenas-latency-table", "version": 1, "space": "gpu", "unit": "us",
       "reference": 20000,
       "fixed": 3100.0,
       "layers": [{"0": 310.5, "1": 520.0, "2": 330.1, "3": 560.2, "4": 350.0, "5": 610.7},
                  {"0": 120.3, ..., "-1": 0.0},
                  ...]}

  ``layers`` has one object per searchable layer (21 for the gpu space), keyed by op id (``-1`` = identity; an
  omitted identity costs 0). It must cover every op the operations file allows at that layer. ``fixed`` is the
  stem, first block, head and classifier; ``reference`` (optional, or ``--ref_value``) is the target the loss
  is relative to. ``mul#log`` takes logarithms, so choose a unit in which every total exceeds 1 (e.g. us).

Losses (upstream ``add_regularization_loss``): ``mul#log``: ``alpha * CE * (log E / log ref) ** beta``;
``add#linear``: ``CE + lambda * (E - ref) / ref``; ``none``: ``CE``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from anglenas.errors import UserError
from anglenas.spaces import reference_table

FORMAT = "anglenas-latency-table"
FLOPS_REFERENCE = 475e6
"""The ABS ProxylessNAS reference value of ``target_hardware=flops`` (upstream 300M, changed to 475M)."""
LOSS_TYPES = ("mul#log", "add#linear", "none")


@dataclass(frozen=True)
class CostTable:
    """Fixed cost plus ``costs[layer][k]`` of candidate ``k`` (the order of the operations file's list)."""

    name: str
    unit: str
    fixed: float
    costs: list[list[float]]
    reference: float | None

    def expected(self, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """``fixed + sum_layers <probs[layer], costs[layer]>`` (a differentiable scalar)."""
        total = torch.zeros((), dtype=torch.float64, device=probs[0].device)
        for p, cost in zip(probs, self.costs):
            total = total + (p.double() * torch.tensor(cost, dtype=torch.float64, device=p.device)).sum()
        return total + self.fixed

    def arch_cost(self, picks: Sequence[int]) -> float:
        """Cost of the architecture that takes candidate ``picks[layer]`` at every layer."""
        return self.fixed + sum(cost[k] for cost, k in zip(self.costs, picks))

    def bounds(self) -> tuple[float, float]:
        return (self.fixed + sum(min(c) for c in self.costs), self.fixed + sum(max(c) for c in self.costs))


def flops_costs(space_name: str, ops: list[list[int]]) -> CostTable:
    """FLOPs of the space at the paper's size: pre + post fixed, ``table.layers[i][op]`` per candidate."""
    table = reference_table(space_name)
    return CostTable("flops", "FLOPs", float(table.pre + table.post),
                     [[float(table.layers[i][op]) for op in site] for i, site in enumerate(ops)], FLOPS_REFERENCE)


def load_latency_table(path: str | Path, space_name: str, ops: list[list[int]]) -> CostTable:
    """Read a user latency table (format above); a :class:`UserError` unless it covers every op of ``ops``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--target_hardware {path}: no such file; give 'flops', 'none' or a latency table JSON "
                        f"(see docs/proxylessnas.md)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"latency table {path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("layers"), list):
        raise UserError(f"latency table {path}: expected a JSON object with \"format\": \"{FORMAT}\" and a "
                        f"\"layers\" list (see docs/proxylessnas.md)")
    if doc.get("space") != space_name:
        raise UserError(f"latency table {path} is for the {doc.get('space')!r} space; the operations file is of "
                        f"the {space_name} space")
    layers = doc["layers"]
    if len(layers) != len(ops):
        raise UserError(f"latency table {path} has {len(layers)} layers; the {space_name} space has {len(ops)}")
    fixed = _number(doc.get("fixed"), path, "fixed")
    costs = []
    for i, (entry, site) in enumerate(zip(layers, ops)):
        if not isinstance(entry, dict):
            raise UserError(f"latency table {path}: layer {i} must be an object of op id -> latency")
        missing = [op for op in site if str(op) not in entry and op != -1]
        if missing:
            raise UserError(f"latency table {path} does not cover the space: layer {i} has no latency for op(s) "
                            f"{missing}; measure every op the operations file allows")
        costs.append([_number(entry.get(str(op), 0.0), path, f"layer {i} op {op}") for op in site])
    reference = doc.get("reference")
    table = CostTable(path.name, str(doc.get("unit", "")), fixed, costs,
                      None if reference is None else _number(reference, path, "reference"))
    low, _ = table.bounds()
    if low <= 1:
        raise UserError(f"latency table {path}: the cheapest architecture costs {low:g} {table.unit}, but mul#log "
                        f"needs totals above 1; express the table in a smaller unit (e.g. us)")
    return table


def _number(value, path: Path, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserError(f"latency table {path}: {what} must be a non-negative number, got {value!r}")
    return float(value)


def hardware_loss(ce: torch.Tensor, expected: torch.Tensor | None, loss_type: str, reference: float | None,
                  alpha: float = 0.2, beta: float = 0.3, lam: float = 0.1) -> torch.Tensor:
    """The architecture loss: CE combined with the expected cost (see the module docstring)."""
    if expected is None or loss_type == "none":
        return ce
    if reference is None or reference <= 1:
        raise UserError(f"the hardware loss needs a reference value above 1, got {reference}; pass --ref_value")
    if loss_type == "mul#log":
        return alpha * ce * (torch.log(expected) / math.log(reference)) ** beta
    if loss_type == "add#linear":
        return ce + lam * (expected - reference) / reference
    raise UserError(f"unknown loss type {loss_type!r}; one of {', '.join(LOSS_TYPES)}")
