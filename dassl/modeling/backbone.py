"""Backbone registry, base class and one tiny registered CNN (enough for ``SimpleNet``).

The CLIP trainers never use this module; Dassl's CNN zoo (ResNets, AlexNet, ...) is
intentionally not reimplemented.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..utils import Registry, check_availability

__all__ = ["BACKBONE_REGISTRY", "Backbone", "build_backbone", "small_cnn"]

BACKBONE_REGISTRY = Registry("BACKBONE")


class Backbone(nn.Module):
    """A feature extractor exposing its output dimension as ``out_features``."""

    _out_features: int

    @property
    def out_features(self) -> int:
        return self._out_features


def build_backbone(name: str, verbose: bool = True, **kwargs) -> Backbone:
    check_availability(name, BACKBONE_REGISTRY.registered_names())
    if verbose:
        print(f"Backbone: {name}")
    return BACKBONE_REGISTRY.get(name)(**kwargs)


class SmallCNN(Backbone):
    """Two conv blocks + global average pooling -> ``width * 2`` features (any input size)."""

    def __init__(self, in_channels: int = 3, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width * 2, 3, padding=1),
            nn.BatchNorm2d(width * 2),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self._out_features = width * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


@BACKBONE_REGISTRY.register()
def small_cnn(pretrained: bool = False, **kwargs) -> SmallCNN:
    """Tiny randomly initialised CNN (``pretrained`` is accepted and ignored: no weights exist)."""
    return SmallCNN(**kwargs)
