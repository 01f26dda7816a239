"""Rectified Adam (Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", 2019).

While the variance of the adaptive learning rate is intractable (the approximated SMA length
``rho_t`` is below 5, i.e. the first few steps) the update falls back to a bias-corrected
momentum-SGD step; afterwards it is Adam with the rectification factor ``r_t``. Weight decay is
decoupled (applied to the weights, scaled by ``lr``), as in the reference implementation Dassl
ships. ``torch.optim.RAdam`` is close but not bit-identical.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional, Tuple

import torch
from torch.optim import Optimizer

__all__ = ["RAdam"]


def _rectified_step_size(step: int, beta1: float, beta2: float, degenerated_to_sgd: bool) -> Tuple[float, bool]:
    """(step size before ``lr``, whether the adaptive denominator is used) for ``step`` (1-based)."""
    beta2_t = beta2**step
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * step * beta2_t / (1.0 - beta2_t)
    bias_correction1 = 1.0 - beta1**step
    if rho_t >= 5:
        rect = math.sqrt((1 - beta2_t) * (rho_t - 4) / (rho_inf - 4) * (rho_t - 2) / rho_t * rho_inf / (rho_inf - 2))
        return rect / bias_correction1, True
    if degenerated_to_sgd:
        return 1.0 / bias_correction1, False
    return -1.0, False


class RAdam(Optimizer):
    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        degenerated_to_sgd: bool = True,
    ):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameters: {betas} (each must be in [0, 1))")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self.degenerated_to_sgd = degenerated_to_sgd
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Optional[Callable] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("RAdam does not support sparse gradients")
                grad = p.grad.float()
                param = p.float()

                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                state["step"] += 1

                step_size, adaptive = _rectified_step_size(state["step"], beta1, beta2, self.degenerated_to_sgd)
                if step_size <= 0:
                    continue
                if weight_decay != 0:
                    param.mul_(1 - weight_decay * lr)
                if adaptive:
                    param.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(eps), value=-step_size * lr)
                else:
                    param.add_(exp_avg, alpha=-step_size * lr)
                if param is not p:
                    p.copy_(param)
        return loss
