"""KgCoOp (Yao, Zhang, Xu, CVPR 2023): CoOp whose class features are kept near zero-shot CLIP's.

    ŵ_c       = normalize(f_t(SOS ‖ ctx ‖ <class c> . EOT))   [C, E]   ctx [4, D_t] from "a photo of a"
    ŵ_c^clip  = normalize(f_t(template_D(class c)))          [C, E]   frozen, one template per dataset
    s         = 100 · normalize(f_v(x)) · ŵᵀ                  [B, C]
    L_ce      = (1/B) Σ_b CE(s_b, y_b)
    L_kg      = 1 − (1/C) Σ_c cos(ŵ_c, ŵ_c^clip)
    L         = L_ce + W · L_kg                                W = TRAINER.COOP.W (8.0 in every config)

Only ``ctx`` learns; evaluation uses s alone (no teacher, no ensembling). The paper writes L_kg as
the squared distance ‖ŵ − ŵ^clip‖² = 2 (1 − cos); the code, and so the published runs, use 1 − cos
with W = 8, and so do we.

Upstream interface kept: the config node ``TRAINER.COOP`` (shared with CoOp, plus ``W``, default
1.0 as upstream's ``train.py``), the registered name ``prompt_learner`` and its keys ``ctx`` [4, D_t],
``token_prefix``, ``token_suffix``. Upstream files also hold ``bias_vectors`` and ``meta_net.*``,
never trained: loading ignores them (and the class buffers), as upstream loads non-strictly.

Choices where upstream leaves one:

* K1: a non-empty ``CTX_INIT`` means "a photo of a" and 4 vectors whatever its text and N_CTX
  (upstream hard-codes the phrase; its configs write ``CTX_INIT: True``, which our string key
  cannot hold, so ours write the phrase itself). An empty one gives CoOp's random context.
* K2: the teacher features come from the same frozen CLIP in the same precision as the student's
  text tower, encoded on first use (upstream keeps a second fp16 CLIP copy and encodes it even in
  evaluation-only runs).
* K3: ``CLASS_TOKEN_POSITION`` other than "end" is refused (upstream reads it and ignores it).
* K4/K7: the shared precision policy (fp32 context, autocast towers, fp32 losses); ``amp`` works.
* K6: the dead ``bias_vectors`` / ``meta_net`` / ``adapter`` are not built; so the global random
  stream differs from upstream's at build time (data order, not expected accuracy).
* Cross-dataset / DG (no upstream recipe): ImageNet, 16 shots, the same config, last epoch (100).
"""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .losses import KnowledgeGuidedLoss
from .prompts import PromptLearner, TextEncoding, coop_context, init_context
from .templates import CUSTOM_TEMPLATES
from .trainer_base import ClipPromptTrainer, add_coop_keys
from .teachers import GuidedPromptCLIP, ZeroShotClassifier, template_of

INIT_PHRASE = "a photo of a"
# The teacher's template per dataset: the CoOp templates, but a full sentence for DTD.
TEACHER_TEMPLATES = {**CUSTOM_TEMPLATES, "DescribableTextures": "a photo of a {}, a type of texture."}


def extend_cfg(cfg) -> None:
    add_coop_keys(cfg, W=1.0)


@TRAINER_REGISTRY.register()
class KgCoOp(ClipPromptTrainer):
    CFG_NODE = "COOP"
    MODEL_NAME = "prompt_learner"
    CHOICES = {"CLASS_TOKEN_POSITION": ("end",)}

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.options
        if options.CTX_INIT:
            if (options.CTX_INIT, options.N_CTX) != (INIT_PHRASE, 4):
                print(f'Note: KgCoOp starts from "{INIT_PHRASE}" (4 vectors) whenever CTX_INIT is set '
                      f"(upstream rule); CTX_INIT {options.CTX_INIT!r} and N_CTX {options.N_CTX} are not used.")
            ctx, template = init_context(backbone, 4, INIT_PHRASE)
        else:
            ctx, template = coop_context(backbone, options, len(classnames), ctx_init="")
        learner = PromptLearner(backbone, classnames, ctx, template, truncate=options.TRUNCATE_TEXT)
        teacher = ZeroShotClassifier(backbone, classnames, template_of(self.cfg.DATASET.NAME, TEACHER_TEMPLATES))
        print(f'Initial context: "{template}"; teacher prompt: "{teacher.template}"; W = {options.W}')
        return GuidedPromptCLIP(backbone, learner, teacher, TextEncoding.from_options(options))

    def build_criterion(self) -> KnowledgeGuidedLoss:
        return KnowledgeGuidedLoss(self.options.W)
