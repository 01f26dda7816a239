"""IVLP (independent vision-language prompting, from the MaPLe repository): deep prompts in both
towers, learned separately (no coupling). Also the "deep language prompting" baseline
(``PROMPT_DEPTH_VISION 0``).

    text:   [SOS] ctx_1..ctx_n <rest of CTX_INIT> <class> . [EOT] (ctx: MaPLe's init rule); before
            text block j = 1..D_t-1 positions 1..n_t are overwritten by that block's own prompts
    vision: n_v prompts appended after the patch tokens (before ln_pre); before vision block
            j = 1..D_v-1 the last n_v tokens are overwritten by that block's own prompts

All prompts start from N(0, 0.02²). The registered module ``VLPromptLearner`` holds only learnable
tensors, named as in upstream's whole-model checkpoints (``prompt_learner.ctx``,
``image_encoder.VPT``, ``{image,text}_encoder.transformer.resblocks.<j>.VPT_shallow``), so those
checkpoints load with their frozen CLIP weights ignored.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .maple import check_depth, init_leading_context
from .prompting import ClipPromptTrainer, PromptLearner, StaticPromptCLIP, add_prompt_keys, encode_class_prompts


def extend_cfg(cfg) -> None:
    node = add_prompt_keys(cfg, "IVLP", CTX_INIT="a photo of a", PREC="fp16", N_CTX_VISION=2, N_CTX_TEXT=2,
                           PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9)
    del node["N_CTX"]  # IVLP counts text and vision tokens separately


def random_prompts(n: int, width: int) -> nn.Parameter:
    return nn.Parameter(nn.init.normal_(torch.empty(n, width), std=0.02))


class BlockPrompt(nn.Module):
    """The prompts one transformer block owns (``VPT_shallow``, as upstream names them)."""

    def __init__(self, n: int, width: int):
        super().__init__()
        self.VPT_shallow = random_prompts(n, width)


class DeepPromptTower(nn.Module):
    """Deep prompts of one tower: ``transformer.resblocks.<j>.VPT_shallow`` for blocks j = 1..depth-1,
    plus (vision only) the shallow prompts ``VPT`` appended before ``ln_pre``."""

    def __init__(self, n: int, width: int, depth: int, shallow: bool):
        super().__init__()
        if shallow:
            self.VPT = random_prompts(n, width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleDict({str(j): BlockPrompt(n, width) for j in range(1, depth)})

    def shallow_prompts(self) -> Optional[torch.Tensor]:
        return getattr(self, "VPT", None)

    def deep_prompts(self) -> List[torch.Tensor]:
        return [block.VPT_shallow for block in self.transformer.resblocks.values()]


class VLPrompts(nn.Module):
    """The registered ``VLPromptLearner`` module (learnable tensors only, upstream key names)."""

    def __init__(self, prompt_learner: PromptLearner, image_encoder: Optional[DeepPromptTower],
                 text_encoder: DeepPromptTower):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder


def prompted_image_embedding(backbone: ClipBackbone, tower: Optional[DeepPromptTower], image: torch.Tensor) -> torch.Tensor:
    """normalize(f_v(x)) through a vision tower with (optional) shallow and deep prompts: [B, E]."""
    if tower is None:
        features = backbone.encode_image(image).features
    else:
        features = backbone.encode_image(image, shallow_prompts=tower.shallow_prompts(),
                                         deep_prompts=tower.deep_prompts()).features
    return F.normalize(features, dim=-1)


class IVLPCLIP(StaticPromptCLIP):
    LEARNABLE = "prompts"

    def text_features(self) -> torch.Tensor:
        learner = self.prompts.prompt_learner
        return encode_class_prompts(self.backbone, learner, learner.assemble(), self.options,
                                    deep_prompts=self.prompts.text_encoder.deep_prompts())          # [C, E]

    def visual_embedding(self, image: torch.Tensor) -> torch.Tensor:
        return prompted_image_embedding(self.backbone, self.prompts.image_encoder, image)


@TRAINER_REGISTRY.register()
class IVLP(ClipPromptTrainer):
    CFG_NODE = "IVLP"
    MODEL_NAME = "VLPromptLearner"

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.method_cfg
        check_depth(options.PROMPT_DEPTH_TEXT, backbone, "TRAINER.IVLP.PROMPT_DEPTH_TEXT")
        vision_depth = options.PROMPT_DEPTH_VISION
        if vision_depth:
            check_depth(vision_depth, backbone, "TRAINER.IVLP.PROMPT_DEPTH_VISION")
        ctx, template = init_leading_context(backbone, options.N_CTX_TEXT, options.CTX_INIT)
        print(f'IVLP: text template "{template}", {ctx.shape[0]} text tokens to depth {options.PROMPT_DEPTH_TEXT}, '
              f"{options.N_CTX_VISION if vision_depth else 0} vision tokens to depth {vision_depth}")
        learner = PromptLearner(backbone, classnames, ctx, template, truncate=options.TRUNCATE_TEXT)
        text = DeepPromptTower(ctx.shape[0], backbone.text_width, options.PROMPT_DEPTH_TEXT, shallow=False)
        vision = (DeepPromptTower(options.N_CTX_VISION, backbone.vision_width, vision_depth, shallow=True)
                  if vision_depth and options.N_CTX_VISION else None)
        return IVLPCLIP(backbone, VLPrompts(learner, vision, text), options)
