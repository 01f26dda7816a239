"""Hand-crafted prompt templates and the zero-shot class features built from them.

* ``CUSTOM_TEMPLATES``: one template per dataset (CoOp/CoCoOp papers; zero-shot CLIP, VPT, SLIP);
* ``IMAGENET_TEMPLATES_SELECT``: CoOp's seven-template ensemble (``ZeroshotCLIP2``);
* ``PROMPTSRC_TEMPLATES``: the 60 templates of PromptSRC's frozen text teacher, used for every
  dataset (upstream PromptSRC's ``trainers/imagenet_templates.py``).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .clip_backbone import ClipBackbone
from .prompts import clean_classname

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
def encode_templates(backbone: ClipBackbone, classnames: Sequence[str], templates: Sequence[str],
                     normalize_each: bool = True) -> torch.Tensor:
    """Normalised class features [C, E]: per template, encode (and normalise, as CLIP's own
    ensembling does); average over templates; renormalise. ``normalize_each=False`` averages the
    raw features instead (PromptSRC's teacher)."""
    names = [clean_classname(c) for c in classnames]
    per_template = [backbone.encode_tokens(backbone.tokenize([t.format(n) for n in names])) for t in templates]
    if normalize_each:
        per_template = [F.normalize(features, dim=-1) for features in per_template]
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)


# PromptSRC's teacher templates: the first 60 of CLIP's 80 ImageNet templates, "a photo of a {}." first.
PROMPTSRC_TEMPLATES = [
    "a photo of a {}.", "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.",
    "a bad photo of the {}.", "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.",
    "a photo of a hard to see {}.", "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.",
    "a dark photo of the {}.", "a drawing of a {}.", "a photo of my {}.", "the plastic {}.",
    "a photo of the cool {}.", "a close-up photo of a {}.", "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.",
    "a sketch of the {}.", "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.",
]
