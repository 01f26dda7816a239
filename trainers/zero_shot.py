"""Zero-shot CLIP teachers for learned prompts (KgCoOp, ProGrad).

``ZeroShotClassifier`` holds the frozen class features of one hand-written template per dataset;
``GuidedPromptCLIP`` is CoOp's model with such a teacher beside it, used in training only. The
templates themselves and their encoding live in ``templates.py``.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch

from .clip_backbone import ClipBackbone
from .prompting import PromptLearner, StaticPromptCLIP, encode_class_prompts
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


class GuidedPromptCLIP(StaticPromptCLIP):
    """CoOp's prompts (``prompt_learner``) beside a zero-shot ``teacher`` that guides training only:
    evaluation is CoOp's, 100 · f̂(x) · ŵᵀ."""

    def __init__(self, backbone: ClipBackbone, learner: PromptLearner, teacher: ZeroShotClassifier, options=None):
        super().__init__(backbone, learner, options)
        self.teacher = teacher

    def text_features(self) -> torch.Tensor:
        learner = self.prompt_learner
        return encode_class_prompts(self.backbone, learner, learner.assemble(), self.options)   # ŵ [C, E]
