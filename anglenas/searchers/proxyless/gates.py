"""ProxylessNAS' binary gates with path-level binarisation (upstream ``MixedEdge``) as a mixing of any relaxed
supernet (:mod:`anglenas.spaces.relaxed`).

A site's candidates are its ops; ``p = softmax(alpha)`` over them. A site that appears in several places (the
cells of a cell space) has one gate and one alpha, shared by all its places. A site with one op is fixed.

- Weight steps (:func:`sample_path`): one path ``k ~ p`` per site runs; only its weights get gradients.
- Architecture steps, ``full_v2`` (the original's default): the output is that of one path ``a ~ p``, written as
  ``y = sum_k g_k o_k(x)`` with the binary gate ``g = onehot(a)``. The gate gradient ``dL/dg_k = <dL/dy, o_k(x)>``
  (summed over the site's places) is computed for every candidate by re-running it under ``no_grad`` in the
  backward pass (memory of one path), and reaches ``alpha`` through the softmax as if ``g`` were ``p``::

      dL/dalpha_i = sum_j dL/dg_j * p_j * (delta_ij - p_i) = p_i * (dL/dg_i - <p, dL/dg>)

  i.e. the straight-through gradient of ``alpha -> L(sum_k (g_k + p_k(alpha) - p_k(alpha_0)) o_k)``. For a loss
  that is linear in ``y`` it equals the exact gradient of the expected loss ``sum_k p_k L(o_k)``.
- Architecture steps, ``two`` (the paper's variant): two paths are drawn from ``p`` without replacement, the
  active one from their renormalised probabilities ``q``; the gradient is the same formula over the pair with
  ``q``, and after the optimiser step the pair's weights are shifted so that their total probability mass is
  unchanged (the original's ``rescale_updated_arch_param``).

A step whose active op adds nothing of its own (the supernet's ``empty_ops``: a skipped MobileNet block, upstream's
``ZeroLayer``; a cell's ``none``) leaves that site out of the update, its expected-cost gradient included, as the
original: a site with its own weight tensor gets no gradient (Adam skips it); a site whose weights are a row of a
matrix shared with other sites (NB201, DARTS) gets a zero gradient, which with Adam's beta1 = 0 (the default) does
not move it either.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from anglenas.spaces.relaxed import MixedOp, PathMixing, RelaxedSupernet

MODES = ("full_v2", "two")
Site = tuple[int, int]


def searchable_sites(model: RelaxedSupernet) -> list[Site]:
    """The (group, site) pairs with more than one op, in group then site order."""
    return [(g, s) for g, group in enumerate(model.site_ops) for s, ops in enumerate(group) if len(ops) > 1]


def sample_path(model: RelaxedSupernet, generator: torch.Generator) -> PathMixing:
    """One path drawn from softmax(alpha) at every searchable site (with ``generator``, on the CPU); a fixed site
    runs its op."""
    choice = {(g, s): 0 for g, group in enumerate(model.site_ops) for s in range(len(group))}
    for site in searchable_sites(model):
        p = torch.softmax(model.alpha(*site).detach().float().cpu(), 0)
        choice[site] = int(torch.multinomial(p, 1, generator=generator))
    return PathMixing(choice)


@dataclass
class SiteGate:
    """One site's paths of this architecture step: the active candidate, the candidates whose gate gradient is
    computed, the gate tensor (created by the first of the site's places to run) and the probabilities of the
    expected-cost term (a differentiable copy of the site's alpha, see :meth:`BinaryGates.cost_probs`)."""

    active: int
    involved: list[int]
    gates: torch.Tensor | None = None
    alpha: torch.Tensor | None = None
    pair_alpha: torch.Tensor | None = field(default=None, repr=False)


class _BinaryGate(torch.autograd.Function):
    """Forward: the active candidate's output. Backward: the input gradient through that candidate, and the
    gradient of every gate in ``site.involved`` (re-running those candidates without a graph)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x: torch.Tensor, gates: torch.Tensor, op: MixedOp, site: SiteGate) -> torch.Tensor:
        detached = x.detach().requires_grad_(x.requires_grad)
        with torch.enable_grad():
            out = op.run(site.active, detached)
        ctx.op, ctx.site, ctx.x, ctx.out, ctx.gate_dtype = op, site, detached, out, gates.dtype
        return out.detach().clone() if out is detached else out.detach()  # identity: not a view of the input

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out: torch.Tensor):
        op, site, x, out = ctx.op, ctx.site, ctx.x, ctx.out
        grad_x = None
        if x.requires_grad and out.requires_grad:
            (grad_x,) = torch.autograd.grad(out, x, grad_out, retain_graph=False)
        dtype = ctx.gate_dtype
        gate_grad = torch.zeros(len(op.ops), dtype=dtype, device=grad_out.device)
        with torch.no_grad():
            for k in site.involved:
                o_k = out if k == site.active else op.run(k, x.detach())
                gate_grad[k] = (o_k.to(dtype) * grad_out.to(dtype)).sum()
        ctx.op = ctx.site = ctx.x = ctx.out = None
        return grad_x, gate_grad, None, None


class BinaryGates:
    """The mixing of an architecture step (module docstring): :meth:`sample` draws the step's paths, the forward
    pass runs them, :meth:`set_arch_grads` (after ``loss.backward()``) writes the architecture gradient into the
    supernet's alpha, :meth:`rescale_pairs` (``two``, after the optimiser step) restores each pair's mass."""

    def __init__(self, model: RelaxedSupernet, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown gate mode {mode!r}; one of {MODES}")
        self.model, self.mode = model, mode
        self.sites: dict[Site, SiteGate] = {}

    def sample(self, generator: torch.Generator) -> None:
        """Draw this step's path(s) at every searchable site from ``p`` (with ``generator``, on the CPU)."""
        self.sites = {}
        for site in searchable_sites(self.model):
            alpha = self.model.alpha(*site).detach().float().cpu()
            p = torch.softmax(alpha, 0)
            if self.mode == "two":
                pair = torch.multinomial(p, 2, replacement=False, generator=generator).tolist()
                q = torch.softmax(alpha[pair], 0)
                c = int(torch.multinomial(q, 1, generator=generator))
                self.sites[site] = SiteGate(pair[c], [pair[c], pair[1 - c]])
            else:
                self.sites[site] = SiteGate(int(torch.multinomial(p, 1, generator=generator)), list(range(len(p))))

    # -- the forward pass -----------------------------------------------------------------------------------------
    def begin(self, model: RelaxedSupernet) -> None:
        pass

    def __call__(self, op: MixedOp, x: torch.Tensor) -> torch.Tensor:
        site = self.sites.get((op.group, op.site))
        if site is None:  # a fixed site
            return op.run(0, x)
        if site.gates is None:
            dtype = torch.promote_types(x.dtype, torch.float32)  # float32 under bf16 autocast, float64 in tests
            site.gates = torch.zeros(len(op.ops), dtype=dtype, device=x.device)
            site.gates[site.active] = 1.0
            site.gates.requires_grad_(True)
        return _BinaryGate.apply(x, site.gates, op, site)

    def cost_probs(self) -> list[list[torch.Tensor]]:
        """The probabilities of the expected-cost term, per group and site: ``p``, or in ``two`` mode ``q`` on the
        sampled pair and 0 elsewhere (the original's ``current_prob_over_ops``); a fixed site ``[1.]``. They are
        differentiable in a copy of each site's alpha, whose gradient :meth:`set_arch_grads` adds in."""
        out = []
        for g, group in enumerate(self.model.site_ops):
            row = []
            for s in range(len(group)):
                site, alpha = self.sites.get((g, s)), self.model.alpha(g, s).detach()
                if site is None:
                    row.append(torch.softmax(alpha, 0))
                    continue
                site.alpha = alpha.clone().requires_grad_(True)
                if self.mode == "two":
                    idx = torch.tensor(site.involved, device=alpha.device)
                    row.append(torch.zeros_like(alpha).index_put((idx,), torch.softmax(site.alpha[idx], 0)))
                else:
                    row.append(torch.softmax(site.alpha, 0))
            out.append(row)
        return out

    # -- the architecture gradient --------------------------------------------------------------------------------
    def set_arch_grads(self) -> None:
        """Add the binary-gate estimate and the expected-cost gradient of every site to its alpha's ``.grad``; a
        site whose active op is one of the supernet's ``empty_ops`` is left out (module docstring)."""
        alphas, grads = [], []
        for (g, s), site in self.sites.items():
            ops = self.model.site_ops[g][s]
            gate_grad = None if site.gates is None else site.gates.grad
            if ops[site.active] in self.model.empty_ops or gate_grad is None:
                continue
            alpha = self.model.alpha(g, s)
            idx = torch.tensor(site.involved if self.mode == "two" else range(len(ops)), device=alpha.device)
            with torch.no_grad():
                p = torch.softmax(alpha[idx].to(gate_grad.dtype), 0)
                gg = gate_grad[idx]
                grad = torch.zeros_like(alpha)
                grad[idx] = (p * (gg - (p * gg).sum())).to(alpha.dtype)
                if site.alpha is not None and site.alpha.grad is not None:
                    grad += site.alpha.grad
            alphas.append(alpha)
            grads.append(grad)
            if self.mode == "two":
                site.pair_alpha = alpha[idx].detach().clone()
            site.gates = site.alpha = None
        if alphas:
            torch.autograd.backward(alphas, grads)  # into the leaf weights (an own tensor or a shared matrix)

    def rescale_pairs(self) -> None:
        """``two`` mode, after the optimiser step: shift each pair's alpha so their total mass is unchanged."""
        for (g, s), site in self.sites.items():
            if site.pair_alpha is None:
                continue
            alpha, idx = self.model.alpha(g, s), site.involved
            with torch.no_grad():
                old = torch.logsumexp(site.pair_alpha, 0)
                new = torch.logsumexp(alpha[idx], 0)
                alpha[idx] -= new - old
            site.pair_alpha = None


def entropy(p: torch.Tensor) -> float:
    """Entropy (nats) of a probability vector."""
    return float(-(p * torch.log(p.clamp_min(1e-12))).sum()) if len(p) > 1 else 0.0


def max_entropy(n: int) -> float:
    return math.log(n) if n > 1 else 0.0
