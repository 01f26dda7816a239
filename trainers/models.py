"""Frozen CLIP plus what a method learns: the model bases every prompt learner builds on.

A model returns one ``ModelOutput`` from one ``forward``, in training and evaluation alike; a
method's loss module (``trainers/losses.py`` and the method files) turns it into the objective.
Outputs only a loss needs (e.g. a frozen teacher's) are fields of a subclass, filled while
``PromptedCLIP.learning``; evaluation leaves them None.

* ``PromptedCLIP``: the frozen ``backbone`` and the ``learnable`` module (the only part that is
  optimised and checkpointed);
* ``StaticPromptCLIP``: class prompts that do not depend on the image (CoOp, MaPLe, IVLP, ...),
  encoded once per evaluation (``TextFeatureCache``);
* ``LearnedContextCLIP``: CoOp's model, class prompts around the learned context of a
  ``PromptLearner`` (CoOp, KgCoOp, ProGrad);
* ``FixedTextCLIP``: class features encoded once at build time (VPT, SLIP-style, zero-shot CLIP);
* ``InstancePromptCLIP``: prompts conditioned on each image (CoCoOp, StyLIP, GOPro), run in groups
  of images so that one text-tower call stays bounded;
* ``StyleStatistics``: the frozen image pass that also returns per-layer token statistics (the
  style/content features of StyLIP and GOPro).
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple, Type, TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .clip_backbone import ClipBackbone
from .prompts import TextEncoding, encode_class_prompts


# --------------------------------------------------------------------------------------------
# What a model returns
# --------------------------------------------------------------------------------------------
@dataclass
class ModelOutput:
    """One forward's result. Methods that need more for their loss subclass it (more fields).

    ``logits`` [B, C] (100·cos); ``image_features`` [B, E], the normalised image side of the
    logits; ``text_features`` the normalised class side, [C, E] or per image [B, C, E].
    ``raw_image_features`` / ``raw_text_features``: the same two before that normalisation (the
    towers' outputs, or what a method puts in their place), for heads that read them as upstream
    does (DePT's); None where a model does not hand them out. Keyword-only, so that a subclass's
    own fields follow the first three positionally.
    """

    logits: torch.Tensor
    image_features: Optional[torch.Tensor] = None
    text_features: Optional[torch.Tensor] = None
    raw_image_features: Optional[torch.Tensor] = dataclasses.field(default=None, kw_only=True)
    raw_text_features: Optional[torch.Tensor] = dataclasses.field(default=None, kw_only=True)


Output = TypeVar("Output", bound=ModelOutput)


def class_level(default=None):
    """Declare a ``ModelOutput`` field without a batch axis (e.g. class features [C, E]): groups of
    images share it, so ``concat_outputs`` keeps the first group's value."""
    return dataclasses.field(default=default, metadata={"class_level": True})


def extend_output(output: ModelOutput, kind: Type[Output], **fields) -> Output:
    """``output`` as a ``kind`` (a ``ModelOutput`` subclass): the same tensors, plus ``fields``
    (the subclass's own fields left out stay at their defaults)."""
    shared = {field.name: getattr(output, field.name) for field in dataclasses.fields(output)}
    return kind(**shared, **fields)


def concat_outputs(outputs: Sequence[Output]) -> Output:
    """Outputs of groups of images joined along the batch: every tensor field is concatenated on
    dim 0 except ``class_level`` ones, which come from the first group."""
    if len(outputs) == 1:
        return outputs[0]
    joined = {}
    for field in dataclasses.fields(outputs[0]):
        values = [getattr(out, field.name) for out in outputs]
        shared = field.metadata.get("class_level", False) or values[0] is None
        joined[field.name] = values[0] if shared else torch.cat(values)
    return type(outputs[0])(**joined)


def clip_logits(backbone: ClipBackbone, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """100·cos logits (plus the model's logit bias where it has one, as sigmoid-trained open_clip
    models do). ``image_features`` [B, E] normalised; text [C, E] or per image [B, C, E]."""
    scale, bias = backbone.logit_scale, backbone.logit_bias
    if text_features.dim() == 2:
        logits = scale * image_features @ text_features.t()
    else:
        logits = scale * torch.einsum("be,bce->bc", image_features, text_features)
    return logits if bias is None else logits + bias


def similarity_output(backbone: ClipBackbone, raw_image_features: torch.Tensor, raw_text_features: torch.Tensor,
                      kind: Type[Output] = ModelOutput, **fields) -> Output:
    """The ``kind`` of output of cosine-similarity logits between image features [B, E] and class
    features ([C, E] or per image [B, C, E]) given before normalisation: both forms are kept."""
    image_features, text_features = F.normalize(raw_image_features, dim=-1), F.normalize(raw_text_features, dim=-1)
    return kind(clip_logits(backbone, image_features, text_features), image_features, text_features,
                raw_image_features=raw_image_features, raw_text_features=raw_text_features, **fields)


def in_image_groups(forward: Callable[[torch.Tensor], Output], image: torch.Tensor, num_classes: int,
                    text_chunk: int) -> Output:
    """``forward`` applied to groups of images, outputs joined along the batch.

    For image-conditioned prompts (CoCoOp, StyLIP) one image costs ``num_classes`` text sequences;
    groups of max(1, ``text_chunk`` // ``num_classes``) images keep a call at about ``text_chunk``
    sequences (0 = the whole batch at once).
    """
    group = max(1, text_chunk // num_classes) if text_chunk > 0 else image.shape[0]
    return concat_outputs([forward(part) for part in image.split(group)])


class TextFeatureCache:
    """Mixin for models whose class text features do not depend on the image (CoOp, MaPLe, ...).

    While caching is switched on (during ``test()``), ``cached(compute)`` encodes the prompts once
    and reuses them for every test batch; otherwise it recomputes (training needs gradients).
    """

    _cache_on = False
    _cache = None

    def cached(self, compute):
        if not self._cache_on:
            return compute()
        if self._cache is None:
            self._cache = compute()
        return self._cache

    @contextlib.contextmanager
    def caching(self):
        self._cache_on, self._cache = True, None
        try:
            yield
        finally:
            self._cache_on, self._cache = False, None


# --------------------------------------------------------------------------------------------
# Model bases
# --------------------------------------------------------------------------------------------
class PromptedCLIP(nn.Module):
    """Frozen CLIP (``backbone``) plus ``learnable``, the one module holding all a method learns.

    ``ClipPromptTrainer`` optimises and checkpoints ``learnable`` under the method's registered name
    (upstream's, e.g. ``prompt_learner``); the frozen CLIP is never saved. ``text_encoding`` holds
    the text tower's speed settings. Subclasses define ``forward(image) -> ModelOutput``.
    """

    def __init__(self, backbone: ClipBackbone, learnable: nn.Module, text_encoding: TextEncoding = TextEncoding()):
        super().__init__()
        self.backbone = backbone
        self.learnable = learnable
        self.text_encoding = text_encoding

    @property
    def learning(self) -> bool:
        """Whether this forward is a training step, for outputs only the loss needs (teachers).

        The trainer switches the modules it registered, i.e. ``learnable`` (Dassl's
        ``set_model_mode``), not this wrapper, whose own ``training`` flag therefore says nothing.
        """
        return self.learnable.training

    @torch.no_grad()
    def frozen_image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen CLIP image features, unnormalised [N, E]."""
        return self.backbone.encode_image(images).features

    def frozen_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen CLIP image features, normalised [N, E]."""
        return F.normalize(self.frozen_image_features(images), dim=-1)

    def raw_image_features(self, image: torch.Tensor) -> torch.Tensor:
        """The image side of the logits before normalisation: frozen CLIP unless a method
        overrides it, [B, E]."""
        return self.frozen_image_features(image)

    def visual_embedding(self, image: torch.Tensor) -> torch.Tensor:
        """The image side of the logits, normalised [B, E]."""
        return F.normalize(self.raw_image_features(image), dim=-1)


class StyleStatistics:
    """Mixin for style-conditioned prompts (StyLIP, GOPro): a frozen image pass that also returns the
    per-layer token statistics. Set ``stats_tokens`` ("all" or "patch": with or without CLS) and
    ``stats_eps`` (added to the token variance) in the constructor."""

    stats_tokens: str = "all"
    stats_eps: float = 0.0

    @torch.no_grad()
    def encode_with_stats(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised features ẑ [N, E] and per-layer token mean/std [N, L, D_v]."""
        out = self.backbone.encode_image(images, with_stats=True, stats_tokens=self.stats_tokens,
                                         stats_eps=self.stats_eps)
        return F.normalize(out.features, dim=-1), out.token_mean, out.token_std


class StaticPromptCLIP(TextFeatureCache, PromptedCLIP):
    """Prompts that do not depend on the image (CoOp, MaPLe, IVLP): C text sequences per step, and
    one encoding of them per evaluation (``TextFeatureCache``)."""

    def raw_text_features(self) -> torch.Tensor:
        """Class features before normalisation [C, E]."""
        raise NotImplementedError

    def text_features(self) -> torch.Tensor:
        """Normalised class features [C, E]."""
        return F.normalize(self.raw_text_features(), dim=-1)

    def forward(self, image: torch.Tensor) -> ModelOutput:
        return similarity_output(self.backbone, self.raw_image_features(image), self.cached(self.raw_text_features))


class LearnedContextCLIP(StaticPromptCLIP):
    """Frozen CLIP + a ``PromptLearner`` (``learnable``): logits = 100 · f̂(x) · ŵᵀ with
    ŵ = normalize(f_t(SOS ‖ ctx ‖ <class> . EOT)), one text pass of C prompts per step."""

    def raw_text_features(self) -> torch.Tensor:
        learner = self.learnable
        return encode_class_prompts(self.backbone, learner, learner.assemble(), self.text_encoding,
                                    normalize=False)                                                  # [C, E]


class FixedTextCLIP(PromptedCLIP):
    """Class features encoded once when the model is built (VPT, SLIP-style): nothing learnable
    on the text side. The buffer is not saved: it is rebuilt from the class names."""

    def __init__(self, backbone: ClipBackbone, learnable: nn.Module, class_features: torch.Tensor):
        super().__init__(backbone, learnable)
        self.register_buffer("class_features", class_features, persistent=False)    # [C, E]

    def forward(self, image: torch.Tensor) -> ModelOutput:
        image_features = self.visual_embedding(image)
        return ModelOutput(clip_logits(self.backbone, image_features, self.class_features), image_features,
                           self.class_features)


class InstancePromptCLIP(PromptedCLIP):
    """Prompts conditioned on each image (CoCoOp, StyLIP, GOPro): B·C text sequences per batch.

    Subclasses give ``forward_group`` (the output for a group of images); ``forward`` runs the
    images in groups of about ``text_encoding.chunk`` text sequences.
    """

    def __init__(self, backbone: ClipBackbone, learnable: nn.Module, template, text_encoding: TextEncoding):
        super().__init__(backbone, learnable, text_encoding)
        self.num_classes = template.n_cls

    def forward_group(self, image: torch.Tensor) -> ModelOutput:
        raise NotImplementedError

    def forward(self, image: torch.Tensor) -> ModelOutput:
        return in_image_groups(self.forward_group, image, self.num_classes, self.text_encoding.chunk)
