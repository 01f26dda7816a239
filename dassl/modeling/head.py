"""Head registry with one MLP head (``mlp``)."""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from ..utils import Registry, check_availability

__all__ = ["HEAD_REGISTRY", "build_head", "mlp"]

HEAD_REGISTRY = Registry("HEAD")

_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}


def build_head(name: str, verbose: bool = True, **kwargs) -> nn.Module:
    check_availability(name, HEAD_REGISTRY.registered_names())
    if verbose:
        print(f"Head: {name}")
    return HEAD_REGISTRY.get(name)(**kwargs)


class MLP(nn.Module):
    """``Linear -> [BN] -> activation -> [Dropout]`` per hidden layer; ``out_features`` = last width."""

    def __init__(
        self,
        in_features: int = 2048,
        hidden_layers: Sequence[int] = (),
        activation: str = "relu",
        bn: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        if isinstance(hidden_layers, int):
            hidden_layers = [hidden_layers]
        if not hidden_layers:
            raise ValueError("MODEL.HEAD.HIDDEN_LAYERS must list at least one layer width for the mlp head")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"Unknown MODEL.HEAD.ACTIVATION {activation!r}; choose from {list(_ACTIVATIONS)}")
        layers = []
        for width in hidden_layers:
            layers.append(nn.Linear(in_features, width))
            if bn:
                layers.append(nn.BatchNorm1d(width))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_features = width
        self.mlp = nn.Sequential(*layers)
        self.out_features = in_features

    def forward(self, x):
        return self.mlp(x)


@HEAD_REGISTRY.register()
def mlp(**kwargs) -> MLP:
    return MLP(**kwargs)
