"""Building blocks that several prompt learners share (GOPro, StyLIP, SLIP-style).

* ``LayerwiseLinear``: L independent per-layer Linear maps, run as one einsum;
* ``StyleProjector`` / ``ContentProjector``: multi-scale style (μ_l, σ_l) and content (μ_l) of the
  image tower's layers, projected to the text width, one vector per layer;
* ``ImageProjector``: P_v, a Linear(E → E) on the normalised CLIP image feature;
* ``QuickGELU``: CLIP's activation x·σ(1.702·x), for heads that use it (TCP's TKE).

Module and parameter names are part of the checkpoint keys (``style.proj.weight``, ...): renaming
them breaks old checkpoints.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


class QuickGELU(nn.Module):
    """CLIP's sigmoid approximation of GELU, x·σ(1.702·x) (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class LayerwiseLinear(nn.Module):
    """L independent Linear(in → out) maps, one per encoder layer, run as one einsum.

    [B, L, in] → [B, L, out]; each map starts from nn.Linear's default initialisation.
    """

    def __init__(self, layers: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(layers, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(layers, out_features))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bli,loi->blo", x, self.weight) + self.bias


class StyleProjector(nn.Module):
    """Multi-scale style: per-layer token statistics (μ_l, σ_l) → one vector per layer [B, L, D_t].

    ``avg`` feeds (μ_l + σ_l)/2 (what the official pooled pair computes); ``concat`` feeds [μ_l ‖ σ_l].
    """

    def __init__(self, layers: int, vision_width: int, text_width: int, stats: str = "avg"):
        super().__init__()
        self.stats = stats
        self.proj = LayerwiseLinear(layers, vision_width * (2 if stats == "concat" else 1), text_width)

    def forward(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        style = torch.cat([mean, std], dim=-1) if self.stats == "concat" else (mean + std) / 2
        return self.proj(style)


class ContentProjector(nn.Module):
    """Multi-scale content: per-layer pooled tokens μ_l → one vector per layer [B, L, D_t]."""

    def __init__(self, layers: int, vision_width: int, text_width: int):
        super().__init__()
        self.proj = LayerwiseLinear(layers, vision_width, text_width)

    def forward(self, mean: torch.Tensor) -> torch.Tensor:
        return self.proj(mean)


class ImageProjector(nn.Linear):
    """P_v: Linear(E → E) on the normalised CLIP image feature; identity init makes step 0 equal
    zero-shot CLIP's image side, ``default`` keeps nn.Linear's init (the official simproj's).

    RNG order: nn.Linear always draws its kaiming-uniform weight, then its uniform bias, from the
    global torch RNG when it is built; ``identity`` overwrites them afterwards, so ``PV_INIT`` does
    not move the draws of anything built later. GOProPrompter builds P_v after style, content and
    ρ, where the official CustomCLIP builds simproj (after its PromptLearner). The official
    PromptLearner also draws an unused meta_net (D3 of docs/DEVIATIONS.md) and one Linear per layer, so the same seed
    does not give the official code's initial values; parity runs start from its weights instead.
    """

    def __init__(self, dim: int, init: str = "identity"):
        super().__init__(dim, dim)
        if init == "identity":
            nn.init.eye_(self.weight)
            nn.init.zeros_(self.bias)
