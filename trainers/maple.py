"""MaPLe (Khattak et al., CVPR 2023): multi-modal prompts, coupled from the text to the vision tower.

With n = ``N_CTX`` prompt tokens and depth J = ``PROMPT_DEPTH``:

    text:   [SOS] ctx_1..ctx_n <rest of CTX_INIT> <class> . [EOT]; before text block j = 1..J-1
            positions 1..n are overwritten by the deep prompts P_t^j [n, D_t]
    vision: F_0(ctx) [n, D_v] appended after the patch tokens (before ln_pre); before vision block
            j = 1..J-1 the last n tokens are overwritten by F_j(P_t^j)

where F_j are Linear(D_t → D_v) coupling functions, so gradients reach P_t^j from both towers.
Everything is injected through ``ClipBackbone``'s shallow/deep prompt arguments: the CLIP package
is not modified. The prompt modules and the model live in ``deep_prompts.py`` (CoPrompt builds on them). The prompts do not depend on the image, so evaluation encodes the class features
once (``TextFeatureCache``).

Upstream behaviour kept: with CTX_INIT "a photo of a" and n = 2 the two vectors start as "a photo"
and replace it, while "of a" stays in the template as fixed text. Upstream quirk fixed: prompts
are cast to the dtype the towers run in (upstream casts them to fp16, which breaks PREC fp32).
"""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .deep_prompts import MaPLeCLIP, MultiModalPrompts, build_maple_learner
from .prompts import TextEncoding
from .trainer_base import ClipPromptTrainer, add_prompt_keys


def extend_cfg(cfg) -> None:
    add_prompt_keys(cfg, "MAPLE", N_CTX=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH=9)


@TRAINER_REGISTRY.register()
class MaPLe(ClipPromptTrainer):
    CFG_NODE = "MAPLE"
    MODEL_NAME = "MultiModalPromptLearner"

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.options
        learner, template = build_maple_learner(backbone, classnames, options, self.CFG_NODE)
        print(f'MaPLe design: multi-modal prompt learning; initial template: "{template}", '
              f"{learner.n_ctx} context vectors, prompt depth {options.PROMPT_DEPTH}")
        return MaPLeCLIP(backbone, MultiModalPrompts(learner), TextEncoding.from_options(options))
