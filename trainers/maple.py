"""MaPLe (Khattak et al., CVPR 2023): multi-modal prompts, coupled from the text to the vision tower.

With n = ``N_CTX`` prompt tokens and depth J = ``PROMPT_DEPTH``:

    text:   [SOS] ctx_1..ctx_n <rest of CTX_INIT> <class> . [EOT]; before text block j = 1..J-1
            positions 1..n are overwritten by the deep prompts P_t^j [n, D_t]
    vision: F_0(ctx) [n, D_v] appended after the patch tokens (before ln_pre); before vision block
            j = 1..J-1 the last n tokens are overwritten by F_j(P_t^j)

where F_j are Linear(D_t → D_v) coupling functions, so gradients reach P_t^j from both towers.
Everything is injected through ``ClipBackbone``'s shallow/deep prompt arguments: the CLIP package
is not modified. The prompts do not depend on the image, so evaluation encodes the class features
once (``TextFeatureCache``).

Upstream behaviour kept: with CTX_INIT "a photo of a" and n = 2 the two vectors start as "a photo"
and replace it, while "of a" stays in the template as fixed text. Upstream quirk fixed: prompts
are cast to the dtype the towers run in (upstream casts them to fp16, which breaks PREC fp32).
"""
from __future__ import annotations

import copy
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .deep_prompts import check_depth, init_leading_context
from .models import StaticPromptCLIP
from .prompts import PromptLearner, TextEncoding, encode_class_prompts
from .trainer_base import ClipPromptTrainer, add_prompt_keys
from .upstream_init import random_prompts


def extend_cfg(cfg) -> None:
    add_prompt_keys(cfg, "MAPLE", N_CTX=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH=9)


class MultiModalPromptLearner(PromptLearner):
    """ctx [n, D_t], F_0 ``proj``, deep text prompts ``compound_prompts_text`` (J-1 × [n, D_t]) and
    their couplings ``compound_prompt_projections`` (J-1 × Linear), named and shaped as upstream.

    The J-1 couplings start as copies of one randomly initialised Linear (upstream does the same).
    """

    def __init__(self, backbone: ClipBackbone, classnames: Sequence[str], ctx_vectors: torch.Tensor,
                 template_prefix: str, depth: int, truncate: bool = True):
        super().__init__(backbone, classnames, ctx_vectors, template_prefix, truncate=truncate)
        n, d_t, d_v = self.n_ctx, backbone.text_width, backbone.vision_width
        self.proj = nn.Linear(d_t, d_v)
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(random_prompts(n, d_t)) for _ in range(depth - 1)])
        coupling = nn.Linear(d_t, d_v)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(coupling) for _ in range(depth - 1)])

    def deep_text_prompts(self) -> List[torch.Tensor]:
        return list(self.compound_prompts_text)

    def vision_prompts(self) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Coupled visual prompts: shallow F_0(ctx) [n, D_v] and deep F_j(P_t^j), j = 1..J-1."""
        deep = [f(p) for f, p in zip(self.compound_prompt_projections, self.compound_prompts_text)]
        return self.proj(self.ctx), deep


class MultiModalPrompts(nn.Module):
    """The registered module: only learnable tensors, under upstream's ``prompt_learner.`` prefix,
    so upstream checkpoints (the whole CustomCLIP) load with their frozen CLIP keys ignored."""

    def __init__(self, prompt_learner: MultiModalPromptLearner):
        super().__init__()
        self.prompt_learner = prompt_learner


class MaPLeCLIP(StaticPromptCLIP):
    """Frozen CLIP with MaPLe's coupled prompts (``learnable``: ``MultiModalPrompts``)."""

    def text_features(self) -> torch.Tensor:
        learner = self.learnable.prompt_learner
        return encode_class_prompts(self.backbone, learner, learner.assemble(), self.text_encoding,
                                    deep_prompts=learner.deep_text_prompts())                   # [C, E]

    def visual_embedding(self, image: torch.Tensor) -> torch.Tensor:
        """Image features through the prompted vision tower: normalised [B, E]."""
        shallow, deep = self.learnable.prompt_learner.vision_prompts()
        features = self.backbone.encode_image(image, shallow_prompts=shallow, deep_prompts=deep).features
        return F.normalize(features, dim=-1)


@TRAINER_REGISTRY.register()
class MaPLe(ClipPromptTrainer):
    CFG_NODE = "MAPLE"
    MODEL_NAME = "MultiModalPromptLearner"

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.options
        check_depth(options.PROMPT_DEPTH, backbone, "TRAINER.MAPLE.PROMPT_DEPTH")
        ctx, template = init_leading_context(backbone, options.N_CTX, options.CTX_INIT)
        print(f'MaPLe design: multi-modal prompt learning; initial template: "{template}", '
              f"{ctx.shape[0]} context vectors, prompt depth {options.PROMPT_DEPTH}")
        learner = MultiModalPromptLearner(backbone, classnames, ctx, template, options.PROMPT_DEPTH,
                                          truncate=options.TRUNCATE_TEXT)
        return MaPLeCLIP(backbone, MultiModalPrompts(learner), TextEncoding.from_options(options))
