"""The DARTS architecture step (quark0/darts ``cnn/architect.py``) on any relaxed supernet: first order, or second
order with the unrolled weights and the finite-difference Hessian-vector product of the DARTS paper (eq. 7, 8).

Second order, with w' = w - eta (mu m + dL_train/dw + wd w) one virtual SGD step (m: the momentum buffer)::

    grad_alpha = dL_val(w', alpha)/dalpha
                 - eta (dL_train(w+, alpha)/dalpha - dL_train(w-, alpha)/dalpha) / (2 eps)

with w+- = w +- eps dL_val(w', alpha)/dw' and eps = 0.01 / ||dL_val/dw'||. The virtual model is evaluated with
:func:`torch.func.functional_call` on substituted weights, so the network is never copied or modified in place.
The architecture weights are the supernet's :meth:`~anglenas.spaces.relaxed.RelaxedSupernet.arch_parameters`.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from anglenas.spaces.relaxed import RelaxedSupernet

Batch = tuple[torch.Tensor, torch.Tensor]
LOW_PRECISION = (torch.float16, torch.bfloat16)


def _or_zeros(grads, like) -> list[torch.Tensor]:
    return [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, like)]


class Architect:
    """Adam on the architecture weights (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3 by default)."""

    def __init__(self, model: RelaxedSupernet, momentum: float, weight_decay: float, lr: float = 3e-4,
                 arch_weight_decay: float = 1e-3, unrolled: bool = False, grad_clip: float = 0.0,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 r: float = 1e-2):
        self.model, self.momentum, self.weight_decay = model, momentum, weight_decay
        self.unrolled, self.grad_clip, self.autocast, self.r = unrolled, grad_clip, autocast, r
        self.optimizer = torch.optim.Adam(model.arch_parameters(), lr=lr, betas=(0.5, 0.999),
                                          weight_decay=arch_weight_decay)
        self.criterion = nn.CrossEntropyLoss()
        self._arch_names = model.arch_names()
        self._weight_names = [n for n, _ in model.named_parameters() if not model.is_arch_name(n)]

    def _loss(self, params: dict[str, torch.Tensor] | None, batch: Batch) -> torch.Tensor:
        x, y = batch
        if params is not None:  # virtual passes leave the running BN statistics alone
            params = {**{n: b.clone() for n, b in self.model.named_buffers()}, **params}
        with self.autocast():
            logits = self.model(x) if params is None else functional_call(self.model, params, (x,))
        return self.criterion(logits.float() if logits.dtype in LOW_PRECISION else logits, y)

    def step(self, train: Batch, valid: Batch, eta: float, network_optimizer: torch.optim.Optimizer | None
             ) -> torch.Tensor:
        """One Adam step of the architecture weights; returns the validation loss (detached)."""
        self.optimizer.zero_grad(set_to_none=True)
        alphas = self.model.arch_parameters()
        if self.unrolled:
            loss, grads = self.unrolled_gradient(train, valid, eta, network_optimizer)
            for alpha, g in zip(alphas, grads):
                alpha.grad = g
        else:
            loss = self._loss(None, valid)
            loss.backward(inputs=alphas)
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(alphas, self.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def unrolled_gradient(self, train: Batch, valid: Batch, eta: float,
                          network_optimizer: torch.optim.Optimizer | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(validation loss at w', the second-order gradient of the architecture weights)."""
        weights = dict(zip(self._weight_names, self.model.weights()))
        alphas = dict(zip(self._arch_names, self.model.arch_parameters()))
        dw = torch.autograd.grad(self._loss(None, train), list(weights.values()), allow_unused=True)
        unrolled = {}
        with torch.no_grad():
            for (name, w), g in zip(weights.items(), dw):
                step = (g if g is not None else torch.zeros_like(w)) + self.weight_decay * w
                state = network_optimizer.state.get(w, {}) if network_optimizer is not None else {}
                if state.get("momentum_buffer") is not None:
                    step = step + self.momentum * state["momentum_buffer"]
                unrolled[name] = (w - eta * step).requires_grad_(True)
        valid_loss = self._loss({**unrolled, **alphas}, valid)
        grads = torch.autograd.grad(valid_loss, [*alphas.values(), *unrolled.values()], allow_unused=True)
        dalpha = _or_zeros(grads[:len(alphas)], alphas.values())
        vector = _or_zeros(grads[len(alphas):], unrolled.values())
        implicit = self.hessian_vector_product(weights, vector, train)
        return valid_loss.detach(), [d - eta * h for d, h in zip(dalpha, implicit)]

    def hessian_vector_product(self, weights: dict[str, torch.Tensor], vector: list[torch.Tensor], batch: Batch
                               ) -> list[torch.Tensor]:
        """(d^2 L_train / dalpha dw) . vector by central differences of dL_train/dalpha at w +- eps vector."""
        norm = torch.cat([v.flatten() for v in vector]).norm()
        eps = self.r / norm.clamp_min(1e-12)
        alphas = dict(zip(self._arch_names, self.model.arch_parameters()))
        grads = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                shifted = {name: w + sign * eps * v for (name, w), v in zip(weights.items(), vector)}
            found = torch.autograd.grad(self._loss({**shifted, **alphas}, batch), list(alphas.values()),
                                        allow_unused=True)
            grads.append(_or_zeros(found, alphas.values()))
        return [(gp - gn) / (2 * eps) for gp, gn in zip(*grads)]
