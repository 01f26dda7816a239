"""Default configuration (``get_cfg_default``) and ``clean_cfg``."""

from __future__ import annotations

from .defaults import _C as cfg_default
from .defaults import CfgNode
from .keys import UnknownConfigKeyError, check_keys, leaf_keys

__all__ = ["get_cfg_default", "clean_cfg", "cfg_default", "CfgNode", "check_keys", "leaf_keys", "UnknownConfigKeyError"]


def get_cfg_default() -> CfgNode:
    """A fresh deep copy of the default tree (callers may mutate it freely)."""
    return cfg_default.clone()


def clean_cfg(cfg: CfgNode, trainer: str) -> None:
    """Drop every ``cfg.TRAINER`` child except ``NAME`` and the node named ``trainer.upper()``."""
    keep = {"NAME", trainer.upper()}
    for key in [k for k in cfg.TRAINER.keys() if k not in keep]:
        cfg.TRAINER.pop(key)
