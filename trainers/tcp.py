"""TCP (Yao, Zhang, Xu, CVPR 2024): textual-based class-aware prompt tuning.

KgCoOp's learned context and knowledge guidance, plus class-aware tokens made from zero-shot CLIP's
class features by a small "textual knowledge embedding" (TKE) and written into the text tower:

    ŵ_c^clip = normalize(f_t(template_D(class c)))           [C, E]  frozen, one template per dataset
    t_c      = TKE(ŵ_c^clip) = W2 · QuickGELU(W1 · ŵ_c^clip)  [C, n·D_t] → [C, n, D_t]   W1: E → E/4
    prompt_c = SOS ‖ ctx ‖ <rest of TCP's template for class c> . EOT           ctx [n, D_t] ~ N(0, 0.02²)
    before text block b (1-based, b = TKE_BLOCK = 9 of 12), positions 1..n of prompt_c become t_c
    ŵ_c      = normalize(f_t(prompt_c with t_c))              [C, E]
    s        = 100 · normalize(f_v(x)) · ŵᵀ                   [B, C]
    L        = CE(s, y) + W · (1 − mean_c cos(ŵ_c, ŵ_c^clip))  W = 8

``ctx`` and the TKE (``meta_net``) learn; evaluation runs the same forward (the TKE reads the class
features of the evaluated classes, so new classes get their own class-aware tokens). The optimizer is
Adam with eps 1e-3 (upstream edits Dassl's Adam for this, see ``ADAM_EPS``).

Upstream interface kept: trainer ``TCP``, the registered module ``prompt_learner`` with upstream's
keys ``ctx`` [n, D_t], ``meta_net.linear1.{weight,bias}`` [E/4, E], ``meta_net.linear2.{weight,bias}``
[4·D_t, E/4], ``token_prefix``, ``token_suffix`` (the class buffers are rebuilt on load, as upstream),
and the recipe of ``configs/trainers/TCP/vit_b16_ep100_ctxv1.yaml`` with the options of its
``scripts/base2new_train.sh`` (N_CTX 4, random context, 50 epochs, Adam, lr 0.002, batch 32).

Where and why we depart from upstream:

* Config node ``TRAINER.TCP`` (upstream reads CoOp's ``TRAINER.COOP``): TCP has keys CoOp and
  KgCoOp do not (``W`` means the guidance weight here, ``TKE_BLOCK``, ``ADAM_EPS``), and upstream's
  ``TRAINER.COOP.W`` is dead (its scripts pass 1.0, the model overwrites it with a hard-coded 1.0
  blend weight and the loss uses a hard-coded 8.0). Here ``W`` is that loss weight (8.0) and the
  class-aware tokens always replace what they stand on (upstream's effective blend weight 1).
* ``TKE_BLOCK`` (upstream: hard-coded before block index 8 of 12, i.e. block 9 counted from 1) is a
  key so other backbones and the kit's 3-block CLIP can place it; it must lie in 2..blocks.
* The number of class-aware tokens is N_CTX (upstream hard-codes 4 tokens of width 512, so only
  ViT-B/16-sized text towers with N_CTX 4 run there; with N_CTX 4 on ViT-B/16 both agree).
* ``ADAM_EPS`` is a key (upstream patches Dassl's Adam to eps 1e-3): applied to the optimizer after
  Dassl builds it, so the trainer runs on upstream Dassl unchanged.
* StanfordCars' template ends with "." like every other (upstream's "X X X X {}, a type of car"
  has none): our class prompts always end with a period.
* The frozen class features come from the shared backbone in its precision, encoded on first use
  (upstream loads a second CLIP to the GPU for them); learnable tensors and the TKE run in fp32.
* ``CSC`` and a class-token position other than "end" do not exist here (upstream reads them, and
  its forward breaks with CSC); ``CTX_INIT`` non-empty means "a photo of a", as KgCoOp's (upstream's
  rule, unused by its recipe).
* Cross-dataset / DG (no upstream recipe): ImageNet, 16 shots, the same config, last epoch.
* Base-to-new evaluation loads the last epoch for every dataset (upstream's script asks for epoch 25
  on SUN397 and ImageNet, which its 50-epoch config never writes).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import List, Optional, Sequence

import torch
import torch.nn as nn

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .components import QuickGELU
from .losses import KnowledgeGuidedLoss
from .prompts import PromptLearner, TextEncoding, clean_classname, encode_class_prompts, init_context
from .teachers import GuidedPromptCLIP, ZeroShotClassifier, template_of
from .templates import CUSTOM_TEMPLATES
from .trainer_base import ClipPromptTrainer, add_prompt_keys

INIT_PHRASE = "a photo of a"
# Zero-shot CLIP's template per dataset: TKE input and teacher (upstream's CUSTOM_TEMPLATES_ori).
TEACHER_TEMPLATES = {
    **CUSTOM_TEMPLATES,
    "FGVCAircraft": "a photo of an aircraft {}.",
    "DescribableTextures": "a photo of a {}, a type of texture.",
    "Food101": "a photo of a {}, a type of food.",
}
# What follows the context in the learned prompt, per dataset (upstream's "X X X X {}, a type of pet."
# without the context slots; the class prompts add the final period). UCF101 and the ImageNets start
# with four template words, which the context slots overwrite as well.
CLASS_PHRASES = {
    "OxfordPets": "{}, a type of pet",
    "OxfordFlowers": "{}, a type of flower",
    "FGVCAircraft": "{}, a type of aircraft",
    "DescribableTextures": "{} texture",
    "StanfordCars": "{}, a type of car",
    "Food101": "{}, a type of food",
    "UCF101": "person doing {}",
}
DEFAULT_PHRASE = "{}"
OPTIMIZERS_WITH_EPS = ("adam", "amsgrad", "adamw")


def extend_cfg(cfg) -> None:
    add_prompt_keys(cfg, "TCP", N_CTX=4, CTX_INIT="", PREC="fp16", W=8.0, TKE_BLOCK=9, ADAM_EPS=1e-3)


def class_phrases(dataset_name: str, classnames: Sequence[str]) -> List[str]:
    """Each class name inside its dataset's TCP phrase ("abyssinian, a type of pet")."""
    phrase = CLASS_PHRASES.get(dataset_name, DEFAULT_PHRASE)
    return [phrase.format(clean_classname(name)) for name in classnames]


class TextualKnowledgeEmbedding(nn.Sequential):
    """TKE: class features [C, E] → class-aware tokens [C, n, D_t] (upstream's ``meta_net``)."""

    def __init__(self, embed_dim: int, n_tokens: int, text_width: int):
        super().__init__(OrderedDict([
            ("linear1", nn.Linear(embed_dim, embed_dim // 4)),
            ("gelu", QuickGELU()),
            ("linear2", nn.Linear(embed_dim // 4, n_tokens * text_width)),
        ]))
        self.n_tokens, self.text_width = n_tokens, text_width

    def forward(self, class_features: torch.Tensor) -> torch.Tensor:
        return super().forward(class_features.float()).reshape(-1, self.n_tokens, self.text_width)


class ClassAwarePromptLearner(PromptLearner):
    """CoOp's ``ctx`` and class buffers plus the TKE (``meta_net``), under upstream's key names."""

    def __init__(self, backbone: ClipBackbone, phrases: Sequence[str], ctx_vectors: torch.Tensor, template: str,
                 truncate: bool = True):
        super().__init__(backbone, phrases, ctx_vectors, template, truncate=truncate)
        self.meta_net = TextualKnowledgeEmbedding(backbone.embed_dim, ctx_vectors.shape[0], backbone.text_width)


class ClassAwarePromptCLIP(GuidedPromptCLIP):
    """KgCoOp's model whose prompts receive the TKE's class-aware tokens before text block
    ``tke_block`` (1-based); the zero-shot teacher is also the TKE's input, so it is encoded in
    evaluation too."""

    def __init__(self, backbone: ClipBackbone, learner: ClassAwarePromptLearner, teacher: ZeroShotClassifier,
                 tke_block: int, text_encoding: TextEncoding = TextEncoding()):
        super().__init__(backbone, learner, teacher, text_encoding)
        if not 2 <= tke_block <= backbone.num_text_layers:
            raise ValueError(f"TRAINER.TCP.TKE_BLOCK={tke_block} must lie in 2..{backbone.num_text_layers} "
                             f"(the text blocks of this backbone, counted from 1; upstream: 9 of 12).")
        self.tke_block = tke_block

    def class_aware_tokens(self) -> torch.Tensor:
        return self.learnable.meta_net(self.teacher.features())                         # [C, n, D_t]

    def deep_prompts(self) -> List[Optional[torch.Tensor]]:
        """For ``ClipBackbone.encode_text``: nothing before blocks 2..b-1, the tokens before block b."""
        return [None] * (self.tke_block - 2) + [self.class_aware_tokens()]

    def raw_text_features(self) -> torch.Tensor:
        learner = self.learnable
        return encode_class_prompts(self.backbone, learner, learner.assemble(), self.text_encoding,
                                    deep_prompts=self.deep_prompts(), normalize=False)      # [C, E]


@TRAINER_REGISTRY.register()
class TCP(ClipPromptTrainer):
    CFG_NODE = "TCP"
    MODEL_NAME = "prompt_learner"

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options, dataset = self.options, self.cfg.DATASET.NAME
        if options.CTX_INIT:
            ctx, _ = init_context(backbone, len(INIT_PHRASE.split()), INIT_PHRASE)
        else:
            ctx, _ = init_context(backbone, options.N_CTX)
        template = " ".join(["X"] * ctx.shape[0])  # the slots the context (and the tokens) fill
        learner = ClassAwarePromptLearner(backbone, class_phrases(dataset, classnames), ctx, template,
                                          truncate=options.TRUNCATE_TEXT)
        teacher = ZeroShotClassifier(backbone, classnames, template_of(dataset, TEACHER_TEMPLATES))
        print(f'TCP: {ctx.shape[0]} context vectors ({"a photo of a" if options.CTX_INIT else "random"}), '
              f'prompt "{template} {class_phrases(dataset, ["{}"])[0]}.", teacher "{teacher.template}", '
              f"class-aware tokens before text block {options.TKE_BLOCK}, W = {options.W}")
        return ClassAwarePromptCLIP(backbone, learner, teacher, options.TKE_BLOCK, TextEncoding.from_options(options))

    def build_criterion(self) -> KnowledgeGuidedLoss:
        return KnowledgeGuidedLoss(self.options.W)

    def build_model(self):
        super().build_model()
        if self.cfg.OPTIM.NAME in OPTIMIZERS_WITH_EPS:
            for group in self.optim.param_groups:
                group["eps"] = self.options.ADAM_EPS
