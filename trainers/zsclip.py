"""Zero-shot CLIP: hand-crafted prompts, no training (the "CLIP" row of every table)."""
from __future__ import annotations

import torch.nn as nn

from dassl.engine import TRAINER_REGISTRY, TrainerX

from .clip_backbone import build_backbone
from .models import FixedTextCLIP
from .templates import IMAGENET_TEMPLATES_SELECT, dataset_template, encode_templates


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(TrainerX):
    """Evaluation only: logits = 100 · normalize(f_v(x)) · Wᵀ with W from one template.

    The model is a ``FixedTextCLIP`` with nothing learnable (an empty module, never registered:
    there is nothing to optimise or save).
    """

    def templates(self) -> list:
        return [dataset_template(self.cfg.DATASET.NAME)]

    def build_model(self):
        self.backbone = build_backbone(self.cfg, "fp16", self.device)
        templates = self.templates()
        print(f"Prompts: {templates}")
        class_features = encode_templates(self.backbone, self.dm.dataset.classnames, templates)
        self.model = FixedTextCLIP(self.backbone, nn.Module(), class_features)

    def model_inference(self, image, *args, **kwargs):
        return self.model(image).logits


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """Prompt ensemble: the seven selected ImageNet templates (+ the dataset's own outside ImageNet)."""

    def templates(self) -> list:
        templates = list(IMAGENET_TEMPLATES_SELECT)
        if self.cfg.DATASET.NAME != "ImageNet":
            templates.append(dataset_template(self.cfg.DATASET.NAME))
        return templates
