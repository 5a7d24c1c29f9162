"""ProxylessNAS's binary-gate mixed layer with path-level binarisation (spec §8, upstream ``MixedEdge``).

A layer holds the candidate blocks its operations list allows (identity, op ``-1``, is the original's ``Zero``:
the block is skipped) and one architecture parameter per candidate, ``alpha``; ``p = softmax(alpha)``.

- Weight steps (``mode = "single"``): one path ``k ~ p`` runs; only its weights get gradients.
- Architecture steps, ``full_v2`` (the original's default): the output is that of one path ``a ~ p``, written as
  ``y = sum_k g_k o_k(x)`` with the binary gate ``g = onehot(a)``. The gate gradient ``dL/dg_k = <dL/dy, o_k(x)>``
  is computed for every candidate by re-running it under ``no_grad`` in the backward pass (memory of one path),
  and reaches ``alpha`` through the softmax as if ``g`` were ``p``::

      dL/dalpha_i = sum_j dL/dg_j * p_j * (delta_ij - p_i) = p_i * (dL/dg_i - <p, dL/dg>)

  i.e. the straight-through gradient of ``alpha -> L(sum_k (g_k + p_k(alpha) - p_k(alpha_0)) o_k)``. For a loss
  that is linear in ``y`` it equals the exact gradient of the expected loss ``sum_k p_k L(o_k)``. A step whose
  sampled path is identity updates nothing in that layer (as the original).
- Architecture steps, ``two`` (the paper's variant): two paths are drawn from ``p`` without replacement, the
  active one from their renormalised probabilities ``q``; the gradient is the same formula over the pair with
  ``q``, and after the optimiser step the pair's parameters are shifted so that their total probability mass is
  unchanged (the original's ``rescale_updated_arch_param``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from anglenas.spaces.mobilenet import IDENTITY, LayerSpec
from anglenas.spaces.mobilenet.blocks import make_block

MODES = ("single", "full_v2", "two")


class _BinaryGate(torch.autograd.Function):
    """Forward: the active candidate's output. Backward: the input gradient through that candidate, and the
    gradient of every gate in ``layer.involved`` (re-running those candidates without a graph)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x: torch.Tensor, gates: torch.Tensor, layer: "MixedLayer") -> torch.Tensor:
        detached = x.detach().requires_grad_(x.requires_grad)
        with torch.enable_grad():
            out = layer.run(layer.active, detached)
        ctx.layer, ctx.x, ctx.out, ctx.gate_dtype = layer, detached, out, gates.dtype
        return out.detach().clone() if out is detached else out.detach()  # identity: not a view of the input

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out: torch.Tensor):
        layer, x, out = ctx.layer, ctx.x, ctx.out
        grad_x = None
        if x.requires_grad and out.requires_grad:
            (grad_x,) = torch.autograd.grad(out, x, grad_out, retain_graph=False)
        dtype = ctx.gate_dtype
        gate_grad = torch.zeros(len(layer.ops), dtype=dtype, device=grad_out.device)
        with torch.no_grad():
            for k in layer.involved:
                o_k = out if k == layer.active else layer.run(k, x.detach())
                gate_grad[k] = (o_k.to(dtype) * grad_out.to(dtype)).sum()
        ctx.layer = ctx.x = ctx.out = None
        return grad_x, gate_grad, None


class MixedLayer(nn.Module):
    """The candidates of one searchable layer, their architecture parameters and binary gates."""

    def __init__(self, layer: LayerSpec, ops: list[int]) -> None:
        super().__init__()
        self.ops = [int(op) for op in ops]
        self.candidates = nn.ModuleDict({str(k): make_block(op, layer.inp, layer.oup, layer.stride)
                                         for k, op in enumerate(self.ops) if op != IDENTITY})
        self.alpha = nn.Parameter(torch.zeros(len(self.ops))) if len(self.ops) > 1 else None
        self.mode = "single"
        self.active = 0
        self.involved: list[int] = [0]
        self._gates: torch.Tensor | None = None
        self._pair_alpha: torch.Tensor | None = None

    @property
    def searchable(self) -> bool:
        return self.alpha is not None

    def probs(self) -> torch.Tensor:
        """softmax(alpha) over this layer's candidates (``[1.]`` for a fixed layer)."""
        if self.alpha is None:
            return torch.ones(1)
        return torch.softmax(self.alpha, dim=0)

    def cost_probs(self) -> torch.Tensor:
        """The probabilities the expected-cost term uses: ``p``, or in ``two`` mode ``q`` on the sampled pair and
        0 elsewhere (as the original's ``current_prob_over_ops``)."""
        p = self.probs()
        if self.mode != "two" or self.alpha is None:
            return p
        q = torch.softmax(self.alpha[self.involved], dim=0)
        return torch.zeros_like(p).index_put((torch.tensor(self.involved, device=p.device),), q)

    def run(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Candidate ``k`` (an index into ``ops``) on ``x``; identity returns ``x``."""
        return x if self.ops[k] == IDENTITY else self.candidates[str(k)](x)

    # -- sampling -------------------------------------------------------------------------------------------------
    def sample(self, mode: str, generator: torch.Generator) -> None:
        """Draw this step's path(s) from ``p`` (with ``generator``, on the CPU) and set the layer's mode."""
        if mode not in MODES:
            raise ValueError(f"unknown gate mode {mode!r}; one of {MODES}")
        self.mode = mode if self.searchable else "single"
        if not self.searchable:
            self.active, self.involved = 0, [0]
            return
        p = self.probs().detach().float().cpu()
        if self.mode == "two":
            pair = torch.multinomial(p, 2, replacement=False, generator=generator).tolist()
            q = torch.softmax(self.alpha.detach().float().cpu()[pair], dim=0)
            c = int(torch.multinomial(q, 1, generator=generator))
            self.active, self.involved = pair[c], [pair[c], pair[1 - c]]
        else:
            self.active = int(torch.multinomial(p, 1, generator=generator))
            self.involved = list(range(len(self.ops))) if self.mode == "full_v2" else [self.active]

    def choose(self, k: int) -> None:
        """Run candidate ``k`` alone (validation of the argmax architecture)."""
        self.mode, self.active, self.involved = "single", int(k), [int(k)]

    def argmax(self) -> int:
        return int(self.probs().argmax()) if self.searchable else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "single":
            return self.run(self.active, x)
        dtype = torch.promote_types(x.dtype, torch.float32)  # float32 under bf16 autocast, float64 in tests
        self._gates = torch.zeros(len(self.ops), dtype=dtype, device=x.device, requires_grad=True)
        with torch.no_grad():
            self._gates[self.active] = 1.0
        return _BinaryGate.apply(x, self._gates, self)

    # -- architecture gradient ------------------------------------------------------------------------------------
    def set_alpha_grad(self) -> None:
        """Add the binary-gate estimate to ``alpha.grad`` (which may already hold an expected-cost gradient); a
        step whose active path is identity leaves the layer out (``alpha.grad = None``, as the original)."""
        if not self.searchable or self.mode == "single":
            return
        if self.ops[self.active] == IDENTITY or self._gates is None or self._gates.grad is None:
            self.alpha.grad = None
            return
        g = self._gates.grad.to(self.alpha.dtype)
        idx = self.involved if self.mode == "two" else list(range(len(self.ops)))
        with torch.no_grad():
            p = torch.softmax(self.alpha[idx], dim=0)
            g = g[idx]
            grad = torch.zeros_like(self.alpha)
            grad[idx] = p * (g - (p * g).sum())
            self.alpha.grad = grad if self.alpha.grad is None else self.alpha.grad + grad
            if self.mode == "two":
                self._pair_alpha = self.alpha[idx].detach().clone()
        self._gates = None

    def rescale_pair(self) -> None:
        """``two`` mode, after the optimiser step: shift the pair's ``alpha`` so their total mass is unchanged."""
        if self._pair_alpha is None:
            return
        idx = self.involved
        with torch.no_grad():
            old = torch.logsumexp(self._pair_alpha, 0)
            new = torch.logsumexp(self.alpha[idx], 0)
            self.alpha[idx] -= new - old
        self._pair_alpha = None


def entropy(p: torch.Tensor) -> float:
    """Entropy (nats) of a probability vector."""
    return float(-(p * torch.log(p.clamp_min(1e-12))).sum()) if len(p) > 1 else 0.0


def max_entropy(n: int) -> float:
    return math.log(n) if n > 1 else 0.0
