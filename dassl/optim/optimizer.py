"""``build_optimizer``: torch optimizers from the ``cfg.OPTIM`` node.

Upstream ships its own RAdam; ``radam`` here is ``torch.optim.RAdam`` with the same decoupled
weight decay (close to upstream's, not bit-identical; no client config uses it).
"""

from __future__ import annotations

import warnings
from typing import Iterable, List, Optional

import torch
import torch.nn as nn

__all__ = ["build_optimizer", "AVAI_OPTIMS"]

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"]


def _staged_param_groups(model: nn.Module, optim_cfg) -> List[dict]:
    """Direct children named in ``NEW_LAYERS`` train at ``LR``; all others at ``LR * BASE_LR_MULT``.

    Parameters registered on the root module itself are in neither group (upstream behaviour).
    """
    if not isinstance(model, nn.Module):
        raise TypeError("When OPTIM.STAGED_LR is True, the model given to build_optimizer() must be an nn.Module")
    if isinstance(model, nn.DataParallel):
        model = model.module
    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    if new_layers is None or len(new_layers) == 0:
        warnings.warn("OPTIM.NEW_LAYERS is empty (staged_lr will be useless)")

    base_params, new_params = [], []
    for name, module in model.named_children():
        (new_params if name in new_layers else base_params).extend(module.parameters())
    return [{"params": base_params, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT}, {"params": new_params}]


def _param_groups(model, optim_cfg, param_groups: Optional[Iterable]):
    if param_groups is not None:
        if optim_cfg.STAGED_LR:
            warnings.warn("OPTIM.STAGED_LR is ignored because param_groups were given to build_optimizer()")
        return param_groups
    if optim_cfg.STAGED_LR:
        return _staged_param_groups(model, optim_cfg)
    return model.parameters() if isinstance(model, nn.Module) else model


def build_optimizer(model, optim_cfg, param_groups: Optional[Iterable] = None) -> torch.optim.Optimizer:
    """Optimizer for ``model`` (an ``nn.Module`` or an iterable of tensors / param-group dicts).

    All parameters are handed over, frozen ones included; torch optimizers skip parameters
    whose ``.grad`` is None, so frozen weights stay untouched.
    """
    name = optim_cfg.NAME
    if name not in AVAI_OPTIMS:
        raise ValueError(f"OPTIM.NAME must be one of {AVAI_OPTIMS}, but got {name!r}")
    groups = _param_groups(model, optim_cfg, param_groups)
    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)

    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd, betas=betas, amsgrad=(name == "amsgrad"))
    if name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=wd,
            dampening=optim_cfg.SGD_DAMPNING,
            nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd, alpha=optim_cfg.RMSPROP_ALPHA)
    if name == "radam":
        return torch.optim.RAdam(groups, lr=lr, weight_decay=wd, betas=betas, decoupled_weight_decay=True)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=wd, betas=betas)
