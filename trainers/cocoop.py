"""CoCoOp (Zhou et al., CVPR 2022): CoOp's context, shifted per image by a light meta-network.

    f̂      = normalize(f_v(x))                              [B, E]
    π      = meta_net(f̂)                                    [B, D_t]   (E → E/16 → D_t)
    t_b    = normalize(f_t(SOS ‖ ctx + π_b ‖ <class> . EOT))  [B, C, E]
    logits = 100 · ⟨f̂_b, t_b,c⟩                              [B, C]

Upstream encodes each image's C prompts in a Python loop over the batch; here the B·C prompts go
through the text tower in one batched call (same features up to floating-point reassociation).
Evaluation feeds the images in groups of about ``TEXT_CHUNK`` / C so that one call stays bounded.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .models import InstancePromptCLIP, ModelOutput, similarity_output
from .prompts import PromptLearner, TextEncoding, encode_class_prompts, init_context
from .trainer_base import ClipPromptTrainer, add_prompt_keys


def extend_cfg(cfg) -> None:
    add_prompt_keys(cfg, "COCOOP", N_CTX=16, CTX_INIT="", PREC="fp16")


class MetaNet(nn.Sequential):
    """Linear(E → E/16) → ReLU → Linear(E/16 → D_t), named ``linear1``/``linear2`` as upstream."""

    def __init__(self, image_dim: int, text_width: int):
        hidden = image_dim // 16
        super().__init__(OrderedDict([
            ("linear1", nn.Linear(image_dim, hidden)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(hidden, text_width)),
        ]))


class ConditionalPromptLearner(PromptLearner):
    """CoOp prompts plus the meta-net; state-dict keys and shapes equal upstream CoCoOp's
    (``ctx``, ``meta_net.linear{1,2}.{weight,bias}``, ``token_prefix``, ``token_suffix``)."""

    def __init__(self, backbone: ClipBackbone, classnames: Sequence[str], ctx_vectors: torch.Tensor,
                 template_prefix: str, truncate: bool = True):
        super().__init__(backbone, classnames, ctx_vectors, template_prefix, truncate=truncate)
        self.meta_net = MetaNet(backbone.embed_dim, backbone.text_width)

    def contexts(self, image_features: torch.Tensor) -> torch.Tensor:
        """Per-image contexts ctx + π_b [B, M, D_t] from normalised image features [B, E]."""
        shift = self.meta_net(image_features)                     # [B, D_t], the same for all M tokens
        return self.ctx.unsqueeze(0) + shift.unsqueeze(1)


class CoCoOpCLIP(InstancePromptCLIP):
    """Frozen CLIP + conditional prompt learner (``learnable``): B·C text sequences per step, C per
    test image."""

    def text_features(self, image_features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Class features conditioned on each image's normalised features [B, E]: [B, C, E], all B·C
        prompts in one batched call (unnormalised if not ``normalize``)."""
        learner = self.learnable
        prompts = learner.assemble_per_image(learner.contexts(image_features))     # [B, C, T', D_t]
        return encode_class_prompts(self.backbone, learner, prompts, self.text_encoding, normalize=normalize)

    def forward_group(self, image: torch.Tensor) -> ModelOutput:
        raw_image = self.raw_image_features(image)
        raw_text = self.text_features(F.normalize(raw_image, dim=-1), normalize=False)
        return similarity_output(self.backbone, raw_image, raw_text)


@TRAINER_REGISTRY.register()
class CoCoOp(ClipPromptTrainer):
    CFG_NODE = "COCOOP"
    MODEL_NAME = "prompt_learner"

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.options
        ctx, template = init_context(backbone, options.N_CTX, options.CTX_INIT)
        print(f'Initial context: "{template}" ({ctx.shape[-2]} vectors)')
        learner = ConditionalPromptLearner(backbone, classnames, ctx, template, truncate=options.TRUNCATE_TEXT)
        return CoCoOpCLIP(backbone, learner, template=learner, text_encoding=TextEncoding.from_options(options))
