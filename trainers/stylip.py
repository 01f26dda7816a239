"""StyLIP (Bose et al., WACV 2024), reconstructed: style-conditioned prompts from multi-scale
statistics of the frozen vision encoder. No official code is public and only the abstract could be
read, so this is our reconstruction, not the authors' implementation.

For every image x with per-layer token statistics μ_l, σ_l [D_v] (l = 1..L):

    s_l    = W^s_l [μ_l ‖ σ_l] + b^s_l                       style projectors → L prompt tokens [L, D_t]
    k(x)   = W^c [μ_1 ‖ … ‖ μ_L] + b^c                       content projector (μ_l = GAP of layer l)
    t_b,c  = normalize(f_t(SOS ‖ s_1..s_L ‖ <class> . EOT))  [B, C, E]
    w_b,c  = normalize(t_b,c + k(x_b))                        CONTENT_FUSION text_add (default)
    logits = 100 · ⟨normalize(f_v(x_b)), w_b,c⟩,  loss = cross-entropy

There are no free context vectors: the L generated tokens are the whole context (template
"X" × L + class name), so ``N_CTX`` and ``CTX_INIT`` must stay unset. Test time is the same
computation: C text sequences per image, images grouped by ``TEXT_CHUNK``.

What the paper (abstract) leaves unspecified, and what we chose:
  * style features: token mean and std (AdaIN statistics), σ = sqrt(biased var + 1e-8), over all
    197 tokens incl. CLS (``STATS_TOKENS all``; ``patch`` drops the CLS token);
  * style projector: one Linear per layer on [μ ‖ σ] (``STYLE_STATS concat``; ``avg`` feeds
    (μ+σ)/2 as GOPro's code does), one token per layer; the same module as GOPro's style projector;
  * content projector: one Linear on the concatenated per-layer GAP features;
  * fusion point and operator: ``text_add`` adds k(x) to the normalised encoded prompt (read as
    "prompt embeddings"); ``token_add`` adds it to every prompt token before the text encoder
    (CoCoOp-like); ``none`` drops the content branch;
  * initialisation: PyTorch defaults, except the content projector, which starts at zero
    (``CONTENT_INIT zeros``): with the default init, k(x) has a norm ~10× that of a unit text
    feature and the same for all classes, which flattens the initial logits. ``default`` restores
    PyTorch's init;
  * optimisation (epochs, lr, batch) and the number of seeds: GOPro's schedule, for a
    like-for-like comparison (configs/trainers/StyLIP/).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .components import StyleProjector
from .models import InstancePromptCLIP, ModelOutput, StyleStatistics, clip_logits
from .prompts import ClassPrompts, TextEncoding, encode_class_prompts
from .trainer_base import ClipPromptTrainer, add_prompt_keys

CHOICES = dict(STATS_TOKENS=("all", "patch"), STYLE_STATS=("concat", "avg"),
               CONTENT_FUSION=("text_add", "token_add", "none"), CONTENT_INIT=("zeros", "default"))
STATS_EPS = 1e-8


def extend_cfg(cfg) -> None:
    add_prompt_keys(cfg, "STYLIP", N_CTX=0, CTX_INIT="", PREC="fp16", STATS_TOKENS="all", STYLE_STATS="concat",
                    CONTENT_FUSION="text_add", CONTENT_INIT="zeros")


def generated_prompt_template(backbone: ClipBackbone, classnames: Sequence[str], n_tokens: int,
                              truncate: bool = True) -> ClassPrompts:
    """SOS / class-name buffers around ``n_tokens`` context slots ("X" × n_tokens <class>.) and
    nothing learnable: the tokens in the slots come from the style projectors."""
    return ClassPrompts(backbone, classnames, n_tokens, " ".join(["X"] * n_tokens), truncate=truncate)


class MultiScaleContentProjector(nn.Linear):
    """k(x) = W^c [GAP(h_1) ‖ … ‖ GAP(h_L)] + b^c: one Linear(L·D_v → out) on all layers at once."""

    def __init__(self, layers: int, vision_width: int, out_features: int, init: str = "zeros"):
        super().__init__(layers * vision_width, out_features)
        if init == "zeros":  # start from the style prompts alone (see the module docstring)
            nn.init.zeros_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, token_mean: torch.Tensor) -> torch.Tensor:
        return super().forward(token_mean.flatten(1))                      # [B, L, D_v] → [B, out]


class StyLIPPrompter(nn.Module):
    """Everything StyLIP learns (the module saved in checkpoints as ``stylip``); ``template`` keeps
    its class-name buffers under ``prompt_learner`` (upstream-style key names)."""

    def __init__(self, backbone: ClipBackbone, template: ClassPrompts, style_stats: str = "concat",
                 content_fusion: str = "text_add", content_init: str = "zeros"):
        super().__init__()
        layers, d_v = backbone.num_vision_layers, backbone.vision_width
        self.prompt_learner = template
        self.style = StyleProjector(layers, d_v, backbone.text_width, style_stats)
        content_dim = {"text_add": backbone.embed_dim, "token_add": backbone.text_width}.get(content_fusion)
        self.content = (MultiScaleContentProjector(layers, d_v, content_dim, content_init)
                        if content_dim else None)


class StyLIPCLIP(StyleStatistics, InstancePromptCLIP):
    """Frozen CLIP + ``StyLIPPrompter`` (``learnable``); ``content_fusion`` is where k(x) joins the
    class features, ``stats_tokens`` the tokens the layer statistics run over."""

    def __init__(self, backbone: ClipBackbone, prompter: StyLIPPrompter, text_encoding: TextEncoding = TextEncoding(),
                 content_fusion: str = "text_add", stats_tokens: str = "all"):
        super().__init__(backbone, prompter, prompter.prompt_learner, text_encoding)
        self.content_fusion = content_fusion
        self.stats_tokens = stats_tokens
        self.stats_eps = STATS_EPS

    def text_features(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """Style-conditioned class features [B, C, E] (content fused as configured), one batched call."""
        prompter, fusion = self.learnable, self.content_fusion
        content: Optional[torch.Tensor] = prompter.content(mean) if prompter.content is not None else None
        tokens = prompter.style(mean, std)                                            # [B, L, D_t]
        if fusion == "token_add":
            tokens = tokens + content.unsqueeze(1)
        prompts = prompter.prompt_learner.assemble_per_image(tokens)                  # [B, C, T', D_t]
        text = encode_class_prompts(self.backbone, prompter.prompt_learner, prompts, self.text_encoding)
        if fusion == "text_add":
            text = F.normalize(text + content.unsqueeze(1), dim=-1)
        return text

    def forward_group(self, image: torch.Tensor) -> ModelOutput:
        image_features, mean, std = self.encode_with_stats(image)
        text_features = self.text_features(mean, std)
        return ModelOutput(clip_logits(self.backbone, image_features, text_features), image_features, text_features)


@TRAINER_REGISTRY.register()
class StyLIP(ClipPromptTrainer):
    CFG_NODE = "STYLIP"
    MODEL_NAME = "stylip"
    CHOICES = CHOICES

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        options = self.method_options(cfg)
        if options.N_CTX or options.CTX_INIT:
            raise ValueError("StyLIP generates one prompt token per vision layer and has no free context: "
                             "leave TRAINER.STYLIP.N_CTX at 0 and TRAINER.STYLIP.CTX_INIT empty.")

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.options
        backbone.require_vit("StyLIP's multi-scale style features")
        template = generated_prompt_template(backbone, classnames, backbone.num_vision_layers,
                                             truncate=options.TRUNCATE_TEXT)
        print(f"StyLIP: {template.n_ctx} style tokens ({options.STYLE_STATS} of mean/std over "
              f"{options.STATS_TOKENS} tokens), content fusion {options.CONTENT_FUSION}")
        prompter = StyLIPPrompter(backbone, template, options.STYLE_STATS, options.CONTENT_FUSION, options.CONTENT_INIT)
        return StyLIPCLIP(backbone, prompter, TextEncoding.from_options(options),
                          content_fusion=options.CONTENT_FUSION, stats_tokens=options.STATS_TOKENS)
