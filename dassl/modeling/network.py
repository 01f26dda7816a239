"""Network registry (empty: no built-in networks are needed by the CLIP trainers)."""

from __future__ import annotations

import torch.nn as nn

from ..utils import Registry, check_availability

__all__ = ["NETWORK_REGISTRY", "build_network"]

NETWORK_REGISTRY = Registry("NETWORK")


def build_network(name: str, verbose: bool = True, **kwargs) -> nn.Module:
    check_availability(name, NETWORK_REGISTRY.registered_names())
    if verbose:
        print(f"Network: {name}")
    return NETWORK_REGISTRY.get(name)(**kwargs)
