"""Learning-rate schedulers: ``build_lr_scheduler`` and the two warmup wrappers.

The warmup wrappers differ from upstream Dassl in two deliberate ways:

* no ``verbose`` argument is passed to torch's base class (current torch rejects it);
* ``state_dict()`` stores the successor's *state dict*, not the successor object, so checkpoints
  load with ``weights_only=True`` and a resumed wrapper keeps driving the real optimizer
  (upstream replaced the successor by an unpickled copy bound to a detached optimizer).
  ``load_state_dict`` still accepts upstream's format (a pickled successor object).
"""

from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, MultiStepLR, StepLR

__all__ = ["build_lr_scheduler", "ConstantWarmupScheduler", "LinearWarmupScheduler", "AVAI_SCHEDS"]

AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]


class _BaseWarmupScheduler(LRScheduler):
    """Run a warmup schedule for ``warmup_epoch`` steps, then delegate every step to ``successor``.

    The wrapper's own counter (``last_epoch``) stops at ``warmup_epoch``; afterwards
    ``step()`` steps the successor and mirrors its last lr.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, successor: LRScheduler, warmup_epoch: int, last_epoch: int = -1):
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def _warmup_lr(self) -> List[float]:
        raise NotImplementedError

    def get_lr(self) -> List[float]:
        if self.last_epoch >= self.warmup_epoch:
            return list(self.successor.get_last_lr())
        return self._warmup_lr()

    def step(self, epoch=None) -> None:
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = list(self.successor.get_last_lr())
        else:
            super().step(epoch)

    def state_dict(self) -> Dict[str, Any]:
        """Plain-typed state: own counters plus ``successor`` as the successor's state dict."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        state = dict(state_dict)
        successor_state = state.pop("successor", None)
        if isinstance(successor_state, LRScheduler):
            # Upstream Dassl checkpoint: the successor object itself was pickled (bound to a
            # detached optimizer). Take only its state so ours keeps the live optimizer.
            successor_state = successor_state.state_dict()
        state.pop("verbose", None)  # upstream-only attribute, meaningless here
        self.__dict__.update(state)
        if successor_state is not None:
            self.successor.load_state_dict(successor_state)


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """``cons_lr`` for every param group during the first ``warmup_epoch`` epochs."""

    def __init__(self, optimizer, successor, warmup_epoch, cons_lr, last_epoch=-1):
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def _warmup_lr(self) -> List[float]:
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """``min_lr`` at epoch 0, then ``base_lr * epoch / warmup_epoch`` until the successor takes over."""

    def __init__(self, optimizer, successor, warmup_epoch, min_lr, last_epoch=-1):
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def _warmup_lr(self) -> List[float]:
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def _single_step_size(stepsize, max_epoch: int) -> int:
    if isinstance(stepsize, (list, tuple)):
        stepsize = stepsize[-1]
    if not isinstance(stepsize, int):
        raise TypeError(f"For single_step lr_scheduler, OPTIM.STEPSIZE must be an integer, but got {type(stepsize)}")
    return max_epoch if stepsize <= 0 else stepsize


def _build_base_scheduler(optimizer, optim_cfg) -> LRScheduler:
    name = optim_cfg.LR_SCHEDULER
    if name == "single_step":
        step_size = _single_step_size(optim_cfg.STEPSIZE, optim_cfg.MAX_EPOCH)
        return StepLR(optimizer, step_size=step_size, gamma=optim_cfg.GAMMA)
    if name == "multi_step":
        if not isinstance(optim_cfg.STEPSIZE, (list, tuple)):
            raise TypeError(
                f"For multi_step lr_scheduler, OPTIM.STEPSIZE must be a list/tuple, but got {type(optim_cfg.STEPSIZE)}"
            )
        return MultiStepLR(optimizer, milestones=list(optim_cfg.STEPSIZE), gamma=optim_cfg.GAMMA)
    return CosineAnnealingLR(optimizer, T_max=float(optim_cfg.MAX_EPOCH))


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg) -> LRScheduler:
    """Scheduler from the ``cfg.OPTIM`` node; stepped once per epoch by the trainer.

    ``OPTIM.WARMUP_EPOCH > 0`` wraps the base scheduler in a constant or linear warmup. With
    ``WARMUP_RECOUNT=False`` the base scheduler's counter starts at ``WARMUP_EPOCH`` instead of 0.
    """
    if optim_cfg.LR_SCHEDULER not in AVAI_SCHEDS:
        raise ValueError(f"OPTIM.LR_SCHEDULER must be one of {AVAI_SCHEDS}, but got {optim_cfg.LR_SCHEDULER!r}")
    scheduler = _build_base_scheduler(optimizer, optim_cfg)

    warmup_epoch = optim_cfg.WARMUP_EPOCH
    if warmup_epoch <= 0:
        return scheduler
    if not optim_cfg.WARMUP_RECOUNT:
        scheduler.last_epoch = warmup_epoch
    if optim_cfg.WARMUP_TYPE == "constant":
        return ConstantWarmupScheduler(optimizer, scheduler, warmup_epoch, optim_cfg.WARMUP_CONS_LR)
    if optim_cfg.WARMUP_TYPE == "linear":
        return LinearWarmupScheduler(optimizer, scheduler, warmup_epoch, optim_cfg.WARMUP_MIN_LR)
    raise ValueError(f"OPTIM.WARMUP_TYPE must be 'constant' or 'linear', but got {optim_cfg.WARMUP_TYPE!r}")
