"""Zero-shot CLIP classifiers: hand-written prompt templates and the class features they give.

Shared by zero-shot CLIP (``zsclip.py``) and by the methods that keep a zero-shot teacher beside
their learned prompts (KgCoOp, ProGrad: ``GuidedPromptCLIP``). A method with its own template table
passes it to ``dataset_template``.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from .clip_backbone import ClipBackbone
from .prompting import PromptLearner, StaticPromptCLIP, clean_classname, encode_class_prompts

# One template per dataset registry name, as in the CoOp/CoCoOp papers.
CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}
DEFAULT_TEMPLATE = "a photo of a {}."

# The seven ImageNet templates CoOp selected for its prompt-ensemble baseline.
IMAGENET_TEMPLATES_SELECT = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


def dataset_template(dataset_name: str, templates: Mapping[str, str] = CUSTOM_TEMPLATES) -> str:
    """The hand-crafted template of a dataset; unknown (user-added) datasets get the generic one."""
    return templates.get(dataset_name, DEFAULT_TEMPLATE)


@torch.no_grad()
def encode_templates(backbone: ClipBackbone, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """Normalised class features [C, E]: per template, encode and normalise; average; renormalise."""
    names = [clean_classname(c) for c in classnames]
    per_template = [F.normalize(backbone.encode_tokens(backbone.tokenize([t.format(n) for n in names])), dim=-1)
                    for t in templates]
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)


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
