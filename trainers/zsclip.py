"""Zero-shot CLIP: hand-crafted prompts, no training (the "CLIP" row of every table)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY, TrainerX

from .clip_backbone import ClipBackbone, build_backbone
from .prompting import clean_classname, clip_logits

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


def dataset_template(dataset_name: str) -> str:
    """The hand-crafted template of a dataset; unknown (user-added) datasets get the generic one."""
    return CUSTOM_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


@torch.no_grad()
def encode_templates(backbone: ClipBackbone, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """Normalised class features [C, E]: per template, encode and normalise; average; renormalise."""
    names = [clean_classname(c) for c in classnames]
    per_template = [F.normalize(backbone.encode_tokens(backbone.tokenize([t.format(n) for n in names])), dim=-1)
                    for t in templates]
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(TrainerX):
    """Evaluation only: logits = 100 · normalize(f_v(x)) · Wᵀ with W from one template."""

    def templates(self) -> list:
        return [dataset_template(self.cfg.DATASET.NAME)]

    def build_model(self):
        self.backbone = build_backbone(self.cfg, "fp16", self.device)
        templates = self.templates()
        print(f"Prompts: {templates}")
        self.text_features = encode_templates(self.backbone, self.dm.dataset.classnames, templates)

    def model_inference(self, image, *args, **kwargs):
        features = F.normalize(self.backbone.encode_image(image).features, dim=-1)
        return clip_logits(self.backbone, features, self.text_features)


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """Prompt ensemble: the seven selected ImageNet templates (+ the dataset's own outside ImageNet)."""

    def templates(self) -> list:
        templates = list(IMAGENET_TEMPLATES_SELECT)
        if self.cfg.DATASET.NAME != "ImageNet":
            templates.append(dataset_template(self.cfg.DATASET.NAME))
        return templates
