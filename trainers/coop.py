"""CoOp (Zhou et al., IJCV 2022): one learnable context shared by all classes, or one per class."""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .prompting import (ClipPromptTrainer, PromptLearner, TextFeatureCache, add_prompt_keys, clip_logits,
                        encode_class_prompts, init_context)


def extend_cfg(cfg) -> None:
    add_prompt_keys(cfg, "COOP", CSC=False, CLASS_TOKEN_POSITION="end")


class CoOpCLIP(TextFeatureCache, nn.Module):
    """logits = 100 · normalize(f_v(x)) · normalize(f_t(prefix ‖ ctx ‖ class))ᵀ.

    One text pass of C prompts per step, independent of the batch; the prompts do not depend on
    the image, so evaluation encodes them once (``TextFeatureCache``).
    """

    def __init__(self, backbone: ClipBackbone, prompt_learner: PromptLearner, options):
        super().__init__()
        self.backbone = backbone
        self.prompt_learner = prompt_learner
        self.options = options

    @property
    def learnable(self) -> nn.Module:
        return self.prompt_learner

    def text_features(self):
        learner = self.prompt_learner
        return encode_class_prompts(self.backbone, learner, learner.assemble(), self.options)   # [C, E]

    def visual_embedding(self, image):
        """The image side of the logits (frozen CLIP for CoOp): normalised [B, E]."""
        return F.normalize(self.backbone.encode_image(image).features, dim=-1)

    def forward(self, image):
        return clip_logits(self.backbone, self.visual_embedding(image), self.cached(self.text_features))


@TRAINER_REGISTRY.register()
class CoOp(ClipPromptTrainer):
    CFG_NODE = "COOP"
    MODEL_NAME = "prompt_learner"

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.method_cfg
        num_copies = len(classnames) if options.CSC else 0
        ctx, template = init_context(backbone, options.N_CTX, options.CTX_INIT, num_copies=num_copies)
        print(f'Initial context: "{template}" ({ctx.shape[-2]} vectors{", class-specific" if num_copies else ""})')
        learner = PromptLearner(backbone, classnames, ctx, template, options.CLASS_TOKEN_POSITION,
                                truncate=options.TRUNCATE_TEXT)
        return CoOpCLIP(backbone, learner, options)
