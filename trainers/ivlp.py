"""IVLP (independent vision-language prompting, from the MaPLe repository): deep prompts in both
towers, learned separately (no coupling). Also the "deep language prompting" baseline
(``PROMPT_DEPTH_VISION 0``).

    text:   [SOS] ctx_1..ctx_n <rest of CTX_INIT> <class> . [EOT] (ctx: MaPLe's init rule); before
            text block j = 1..D_t-1 positions 1..n_t are overwritten by that block's own prompts
    vision: n_v prompts appended after the patch tokens (before ln_pre); before vision block
            j = 1..D_v-1 the last n_v tokens are overwritten by that block's own prompts

All prompts start from N(0, 0.02²), drawn in upstream's order (same seed, same initial prompts;
``trainers/deep_prompts.py``). The registered module ``VLPromptLearner`` holds only learnable
tensors, named as in upstream's whole-model checkpoints (``prompt_learner.ctx``,
``image_encoder.VPT``, ``{image,text}_encoder.transformer.resblocks.<j>.VPT_shallow``), so those
checkpoints load with their frozen CLIP weights ignored.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .deep_prompts import IndependentVLCLIP
from .prompts import TextEncoding
from .trainer_base import DeepPromptTrainer, add_prompt_keys


def extend_cfg(cfg) -> None:
    node = add_prompt_keys(cfg, "IVLP", CTX_INIT="a photo of a", PREC="fp16", N_CTX_VISION=2, N_CTX_TEXT=2,
                           PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9)
    del node["N_CTX"]  # IVLP counts text and vision tokens separately


@TRAINER_REGISTRY.register()
class IVLP(DeepPromptTrainer):
    CFG_NODE = "IVLP"
    MODEL_NAME = "VLPromptLearner"

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        prompts = self.vl_prompts(backbone, classnames)
        return IndependentVLCLIP(backbone, prompts, TextEncoding.from_options(self.options))
