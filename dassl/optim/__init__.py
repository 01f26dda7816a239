"""Optimizers and learning-rate schedulers built from ``cfg.OPTIM``."""

from .lr_scheduler import AVAI_SCHEDS, ConstantWarmupScheduler, LinearWarmupScheduler, build_lr_scheduler
from .optimizer import AVAI_OPTIMS, build_optimizer
