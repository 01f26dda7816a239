"""CoOp (Zhou et al., IJCV 2022): one learnable context shared by all classes, or one per class.

    t      = normalize(f_t(SOS ‖ ctx ‖ <class> . EOT))     [C, E]   ctx [M, D_t] (CSC: [C, M, D_t])
    logits = 100 · normalize(f_v(x)) · tᵀ                   [B, C],  loss = cross-entropy
"""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .models import LearnedContextCLIP
from .prompts import PromptLearner, TextEncoding, coop_context
from .trainer_base import ClipPromptTrainer, add_coop_keys


def extend_cfg(cfg) -> None:
    add_coop_keys(cfg)


@TRAINER_REGISTRY.register()
class CoOp(ClipPromptTrainer):
    CFG_NODE = "COOP"
    MODEL_NAME = "prompt_learner"

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.options
        ctx, template = coop_context(backbone, options, len(classnames))
        print(f'Initial context: "{template}" ({ctx.shape[-2]} vectors{", class-specific" if options.CSC else ""})')
        learner = PromptLearner(backbone, classnames, ctx, template, options.CLASS_TOKEN_POSITION,
                                truncate=options.TRUNCATE_TEXT)
        return LearnedContextCLIP(backbone, learner, TextEncoding.from_options(options))
