"""Zero-shot CLIP: hand-crafted prompts, no training (the "CLIP" row of every table)."""
from __future__ import annotations

import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY, TrainerX

from .clip_backbone import build_backbone
from .prompting import clip_logits
# Re-exported: the templates lived here before trainers/templates.py.
from .templates import (CUSTOM_TEMPLATES, DEFAULT_TEMPLATE, IMAGENET_TEMPLATES_SELECT,  # noqa: F401
                        dataset_template, encode_templates)


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
