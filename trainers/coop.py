"""CoOp (Zhou et al., IJCV 2022): one learnable context shared by all classes, or one per class."""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .prompting import (ClipPromptTrainer, PromptLearner, StaticPromptCLIP, add_coop_keys, coop_context,
                        encode_class_prompts)


def extend_cfg(cfg) -> None:
    add_coop_keys(cfg)


class CoOpCLIP(StaticPromptCLIP):
    """logits = 100 · normalize(f_v(x)) · normalize(f_t(prefix ‖ ctx ‖ class))ᵀ.

    One text pass of C prompts per step, independent of the batch; evaluation encodes them once.
    """

    def text_features(self):
        learner = self.prompt_learner
        return encode_class_prompts(self.backbone, learner, learner.assemble(), self.options)   # [C, E]


@TRAINER_REGISTRY.register()
class CoOp(ClipPromptTrainer):
    CFG_NODE = "COOP"
    MODEL_NAME = "prompt_learner"

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.method_cfg
        ctx, template = coop_context(backbone, options, len(classnames))
        print(f'Initial context: "{template}" ({ctx.shape[-2]} vectors{", class-specific" if options.CSC else ""})')
        learner = PromptLearner(backbone, classnames, ctx, template, options.CLASS_TOKEN_POSITION,
                                truncate=options.TRUNCATE_TEXT)
        return CoOpCLIP(backbone, learner, options)
