"""Deep VPT (Jia et al., ECCV 2022), in the MaPLe repository's flavour: prompts in the vision tower
only, fixed hand-crafted text.

    vision: n prompts appended after the patch tokens (before ln_pre); before vision block
            j = 1..depth-1 the last n tokens are overwritten by that block's own prompts
    text:   "a photo of a {class}." encoded once by the frozen text tower (no text pass in training)

The registered module ``prompt_learner`` holds only the prompts, named as in upstream's whole-model
checkpoints (``image_encoder.VPT``, ``image_encoder.transformer.resblocks.<j>.VPT_shallow``), and
starts from upstream's values for the same seed (drawn in upstream's order, ``trainers/upstream_init.py``).
``CTX_INIT`` is kept for config compatibility; the text template is fixed, as upstream.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .deep_prompts import DeepPromptTower, check_depth, prompted_image_features
from .models import FixedTextCLIP
from .templates import encode_templates
from .trainer_base import DeepPromptTrainer
from .upstream_init import draw_prompts_in_upstream_order

TEXT_TEMPLATE = "a photo of a {}."


def extend_cfg(cfg) -> None:
    node = CN()
    node.N_CTX_VISION = 2
    node.CTX_INIT = "a photo of a"
    node.PREC = "fp16"
    node.PROMPT_DEPTH_VISION = 1
    cfg.TRAINER.VPT = node


class VisualPrompts(nn.Module):
    """The registered ``prompt_learner`` module: the vision tower's prompts under ``image_encoder``."""

    def __init__(self, image_encoder: DeepPromptTower):
        super().__init__()
        self.image_encoder = image_encoder


class VPTCLIP(FixedTextCLIP):
    """Frozen text features of the fixed template; images through the prompted vision tower
    (``learnable``: ``VisualPrompts``)."""

    def raw_image_features(self, image: torch.Tensor) -> torch.Tensor:
        return prompted_image_features(self.backbone, self.learnable.image_encoder, image)      # [B, E]


@TRAINER_REGISTRY.register()
class VPT(DeepPromptTrainer):
    CFG_NODE = "VPT"
    MODEL_NAME = "prompt_learner"

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.options
        check_depth(options.PROMPT_DEPTH_VISION, backbone, "TRAINER.VPT.PROMPT_DEPTH_VISION")
        if options.N_CTX_VISION < 1:
            raise ValueError(f"TRAINER.VPT.N_CTX_VISION must be >= 1, got {options.N_CTX_VISION}")
        print(f'VPT: {options.N_CTX_VISION} vision tokens to depth {options.PROMPT_DEPTH_VISION}; text "{TEXT_TEMPLATE}"')
        prompts, _ = draw_prompts_in_upstream_order(backbone, self.rng_before_clip,
                                                    (options.N_CTX_VISION, options.PROMPT_DEPTH_VISION), (0, 0))
        tower = DeepPromptTower(prompts, shallow=True)
        class_features = encode_templates(backbone, classnames, [TEXT_TEMPLATE])
        return VPTCLIP(backbone, VisualPrompts(tower), class_features)
