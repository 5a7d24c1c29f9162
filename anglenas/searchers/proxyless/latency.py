"""The hardware term of ProxylessNAS: an expected cost under the architecture distribution and its loss.

A :class:`CostTable` holds a fixed cost (everything outside the searched sites) and the cost of each op of each
site; ``E[cost] = fixed + sum_sites sum_k p_k * cost[site][k]`` is differentiable in the architecture weights. A
relaxed supernet with several weight groups (DARTS: normal and reduction cells) over one per-site table averages
the groups' expected costs. Two sources:

- ``--target_hardware flops``: the space's FLOPs table (:meth:`~anglenas.spaces.base.SearchSpace.flops_table`) of
  the network being searched, at its width, input size and class count, as upstream's ``expected_flops`` runs the
  supernet itself. Convs count multiply-accumulates and the classifier ``in * out`` (upstream's
  ``LinearLayer.get_flops``: its weight's element count). The reference scales with the network: the paper-size
  value (the gpu space: the ABS original's 475M; another space: its search FLOPs ceiling, else the mean FLOPs of
  its architectures) times the ratio of the mean FLOPs of the space's architectures at the searched size to that
  at the paper's size (upstream keys its reference by ``--width_mult``).
- ``--target_hardware FILE``: a latency lookup table the user measured on the target device (nothing is
  downloaded, unlike the original, which fetched a YAML table at start-up). JSON::

      {"format": "anglenas-latency-table", "version": 1, "space": "gpu", "unit": "us",
       "reference": 20000,
       "fixed": 3100.0,
       "layers": [{"0": 310.5, "1": 520.0, "2": 330.1, "3": 560.2, "4": 350.0, "5": 610.7},
                  {"0": 120.3, ..., "-1": 0.0},
                  ...]}

  ``layers`` has one object per site (21 layers in the gpu space, 6 edges in nb201), keyed by op id. It must cover
  every op the operations file allows there; an op that adds nothing of its own (the gpu space's identity ``-1``,
  a cell's ``none``) may be omitted and then costs 0. ``fixed`` is everything else; ``reference`` (optional, or
  ``--ref_value``) is the target the loss is relative to. ``mul#log`` takes logarithms, so choose a unit in which
  every total exceeds 1 (e.g. us).

Losses (upstream ``add_regularization_loss``): ``mul#log``: ``alpha * CE * (log E / log ref) ** beta``;
``add#linear``: ``CE + lambda * (E - ref) / ref``; ``none``: ``CE``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Sequence

import torch
from torch import nn

from anglenas.errors import UserError
from anglenas.spaces.base import SearchSpace
from anglenas.spaces.registry import get_space

FORMAT = "anglenas-latency-table"
REFERENCE_FLOPS = {"gpu": 475e6}
"""The ABS original's ProxylessNAS reference FLOPs at the paper's size (upstream's 300M, changed to 475M)."""
LOSS_TYPES = ("mul#log", "add#linear", "none")


@dataclass(frozen=True)
class CostTable:
    """Fixed cost plus ``costs[site][k]`` of op ``k`` of the site's list (the operations file's order)."""

    name: str
    unit: str
    fixed: float
    costs: list[list[float]]
    reference: float | None

    def expected(self, probs: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
        """``fixed + mean_groups sum_sites <probs[group][site], costs[site]>`` (a differentiable float64 scalar)."""
        device = probs[0][0].device
        total = torch.zeros((), dtype=torch.float64, device=device)
        for group in probs:
            for p, cost in zip(group, self.costs):
                total = total + (p.double() * torch.tensor(cost, dtype=torch.float64, device=device)).sum()
        return total / len(probs) + self.fixed

    def arch_cost(self, picks: Sequence[Sequence[int]]) -> float:
        """Cost of the architecture that takes op ``picks[group][site]`` (an index into the site's list)."""
        return self.fixed + sum(cost[k] for group in picks for cost, k in zip(self.costs, group)) / len(picks)

    def bounds(self) -> tuple[float, float]:
        return (self.fixed + sum(min(c) for c in self.costs), self.fixed + sum(max(c) for c in self.costs))


def proxyless_flops(space: SearchSpace) -> tuple[float, list[list[int]]]:
    """(fixed FLOPs, FLOPs of every (site, op id) of the table) of ``space`` in upstream ProxylessNAS' convention:
    the space's table with the classifier as ``in * out``. The tables count a Linear with a bias ``(2 in - 1) out``
    (thop) and ShuffleNetV2's bias-free one ``in * out``; the difference is read off the space's network."""
    table = space.flops_table()
    with torch.device("meta"):
        net = space.network([site[0] for site in space.initial_operations()])
    extra = sum((m.in_features - 1) * m.out_features for m in net.modules()
                if isinstance(m, nn.Linear) and m.bias is not None)
    return float(table.pre + table.post - extra), table.layers


def mean_flops(space: SearchSpace, flops: tuple[float, list[list[int]]] | None = None) -> float:
    """The mean FLOPs (``flops``, default :func:`proxyless_flops`) of the space's architectures: every site uniform
    over its ops."""
    fixed, layers = flops or proxyless_flops(space)
    return fixed + sum(sum(layers[s][op] for op in site) / len(site)
                       for s, site in enumerate(space.initial_operations()))


def flops_costs(space: SearchSpace, ops: list[list[int]], reference: float | None = None) -> CostTable:
    """The expected-FLOPs term of ``space`` (the searched network's size) restricted to ``ops``; ``reference``:
    the paper-size reference (default: see the module docstring), scaled to this size."""
    paper = get_space(space.name)
    paper_mean = mean_flops(paper)
    if reference is None:
        ceiling = paper.search_max_flops
        reference = REFERENCE_FLOPS.get(space.name, ceiling if math.isfinite(ceiling) else paper_mean)
    flops = proxyless_flops(space)
    fixed, layers = flops
    return CostTable("flops", "FLOPs", fixed, [[float(layers[s][op]) for op in site] for s, site in enumerate(ops)],
                     reference * mean_flops(space, flops) / paper_mean)


def load_latency_table(path: str | Path, space_name: str, ops: list[list[int]],
                       free_ops: Collection[int] = ()) -> CostTable:
    """Read a user latency table (format above); a :class:`UserError` unless it covers every op of ``ops``
    (``free_ops`` may be omitted: they cost 0)."""
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
        missing = [op for op in site if str(op) not in entry and op not in free_ops]
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
