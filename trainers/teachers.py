"""Zero-shot CLIP teachers for learned prompts (KgCoOp, ProGrad).

``ZeroShotClassifier`` holds the frozen class features of one hand-written template per dataset;
``GuidedPromptCLIP`` is CoOp's model with such a teacher beside it, whose outputs
(``GuidedOutput``) are added in training steps only. The templates themselves and their encoding
live in ``templates.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import torch

from .clip_backbone import ClipBackbone
from .models import LearnedContextCLIP, ModelOutput, class_level, clip_logits, extend_output
from .prompts import PromptLearner, TextEncoding
from .templates import DEFAULT_TEMPLATE, encode_templates


def template_of(dataset_name: str, templates: Mapping[str, str]) -> str:
    """A method's template for a dataset (registry name); unknown datasets get the generic one."""
    return templates.get(dataset_name, DEFAULT_TEMPLATE)


class ZeroShotClassifier:
    """Frozen CLIP class features of one template per dataset, ŵ^clip [C, E] (a teacher).

    Encoded with the same frozen backbone (same weights, same precision) as the prompts it guides,
    on first use: evaluation-only runs never pay for it. A plain attribute, not a module: nothing
    of it is saved in checkpoints (it is rebuilt from the class names).
    """

    def __init__(self, backbone: ClipBackbone, classnames: Sequence[str], template: str):
        self.backbone = backbone
        self.classnames = list(classnames)
        self.template = template
        self._features: Optional[torch.Tensor] = None

    def features(self) -> torch.Tensor:
        if self._features is None:
            self._features = encode_templates(self.backbone, self.classnames, [self.template])
        return self._features


@dataclass
class GuidedOutput(ModelOutput):
    """CoOp's output and, in training steps, the zero-shot teacher's view of the same images.

    ``teacher_logits`` s_T [B, C] = 100 · f̂(x) · ŵ^clipᵀ (no gradient); ``teacher_text_features``
    ŵ^clip [C, E] (constant). Both are None in evaluation.
    """

    teacher_logits: Optional[torch.Tensor] = None
    teacher_text_features: Optional[torch.Tensor] = class_level()


class GuidedPromptCLIP(LearnedContextCLIP):
    """CoOp's prompts (``learnable``: a ``PromptLearner``) beside a zero-shot ``teacher`` that
    guides training only: evaluation is CoOp's, 100 · f̂(x) · ŵᵀ, and never encodes the teacher."""

    def __init__(self, backbone: ClipBackbone, learner: PromptLearner, teacher: ZeroShotClassifier,
                 text_encoding: TextEncoding = TextEncoding()):
        super().__init__(backbone, learner, text_encoding)
        self.teacher = teacher

    def forward(self, image: torch.Tensor) -> GuidedOutput:
        output = extend_output(super().forward(image), GuidedOutput)
        if self.learning:
            output.teacher_text_features = self.teacher.features()
            with torch.no_grad():  # the teacher reads the student's frozen image features
                output.teacher_logits = clip_logits(self.backbone, output.image_features, output.teacher_text_features)
        return output
