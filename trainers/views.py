"""Augmented image views for the self-supervised branches (GOPro, SLIP-style).

All views are built from the raw PIL image inside DataLoader workers, so the training thread
never converts tensors back to images. Each function returns a callable PIL image → normalised
tensor [3, H, W], to be passed to Dassl's ``DataManager(cfg, custom_tfm_train=[...])`` which then
yields the views as ``img2``, ``img3``, ...

* ``mocov3_view``: MoCo v3 "augmentation 1" (the view GOPro's official code uses).
* ``augmix_view``: AugMix as in TPT / GOPro (severity 1, nine PIL ops, three chains of depth 1-3,
  Dirichlet chain weights, Beta mix with the pre-augmented image).
* ``slip_view``: SLIP's SimCLR view.
"""
from __future__ import annotations

from typing import Callable, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms as T

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomGaussianBlur:
    """PIL Gaussian blur with a radius drawn uniformly from ``sigma`` (MoCo v3 / SimCLR style).

    The radius comes from torch's RNG, like every torchvision transform of the views, not from
    Python's ``random`` (as in MoCo v3): the dataset consumes Python's ``random`` only when it
    creates a few-shot split, so with ``NUM_WORKERS 0`` a Python draw here would make the run that
    creates the split differ from every later run with the same seed.
    """

    def __init__(self, sigma: Tuple[float, float] = (0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, image: Image.Image) -> Image.Image:
        radius = float(torch.empty(()).uniform_(*self.sigma))
        return image.filter(ImageFilter.GaussianBlur(radius=radius))


def _to_tensor(mean: Sequence[float], std: Sequence[float]) -> list:
    return [T.ToTensor(), T.Normalize(mean, std)]


def mocov3_view(size: int, mean=CLIP_MEAN, std=CLIP_STD) -> Callable:
    """MoCo v3 augmentation 1: crop, colour jitter (p 0.8), grey (p 0.2), blur (p 1.0), flip."""
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0)),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        RandomGaussianBlur((0.1, 2.0)),
        T.RandomHorizontalFlip(),
        *_to_tensor(mean, std),
    ])


def slip_view(size: int, mean=CLIP_MEAN, std=CLIP_STD) -> Callable:
    """SLIP's SSL view: crop, colour jitter (p 0.8), grey (p 0.2), blur (p 0.5), flip."""
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0)),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([RandomGaussianBlur((0.1, 2.0))], p=0.5),
        T.RandomHorizontalFlip(),
        *_to_tensor(mean, std),
    ])


# ---- AugMix (TPT / GOPro parameters) ----------------------------------------------------------
def _level(severity: float) -> float:
    return np.random.uniform(low=0.1, high=severity)


def _int_level(severity: float, maxval: float) -> int:
    return int(_level(severity) * maxval / 10)


def _float_level(severity: float, maxval: float) -> float:
    return float(_level(severity)) * maxval / 10


def _signed(value: float) -> float:
    return -value if np.random.uniform() > 0.5 else value


def _affine(image: Image.Image, coeffs) -> Image.Image:
    return image.transform(image.size, Image.AFFINE, coeffs, resample=Image.BILINEAR)


AUGMIX_OPS = {
    "autocontrast": lambda img, s: ImageOps.autocontrast(img),
    "equalize": lambda img, s: ImageOps.equalize(img),
    "posterize": lambda img, s: ImageOps.posterize(img, 4 - _int_level(s, 4)),
    "rotate": lambda img, s: img.rotate(_signed(_int_level(s, 30)), resample=Image.BILINEAR),
    "solarize": lambda img, s: ImageOps.solarize(img, 256 - _int_level(s, 256)),
    "shear_x": lambda img, s: _affine(img, (1, _signed(_float_level(s, 0.3)), 0, 0, 1, 0)),
    "shear_y": lambda img, s: _affine(img, (1, 0, 0, _signed(_float_level(s, 0.3)), 1, 0)),
    "translate_x": lambda img, s: _affine(img, (1, 0, _signed(_int_level(s, img.size[0] / 3)), 0, 1, 0)),
    "translate_y": lambda img, s: _affine(img, (1, 0, 0, 0, 1, _signed(_int_level(s, img.size[1] / 3)))),
}


class AugMix:
    """One AugMix view: m·x + (1 - m)·Σ_i w_i·chain_i(x), mixed on normalised tensors.

    ``x`` is the image after a random resized crop and flip; three chains of 1-3 random ops each;
    w ~ Dirichlet(1, 1, 1), m ~ Beta(1, 1). Randomness comes from ``numpy.random`` (seeded per
    DataLoader worker by the engine).
    """

    def __init__(self, size: int, severity: float = 1.0, width: int = 3, mean=CLIP_MEAN, std=CLIP_STD):
        self.pre = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip()])
        self.post = T.Compose(_to_tensor(mean, std))
        self.severity = severity
        self.width = width
        self.ops = list(AUGMIX_OPS.values())

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = self.pre(image)
        weights = np.float32(np.random.dirichlet([1.0] * self.width))
        m = np.float32(np.random.beta(1.0, 1.0))
        mix = torch.zeros_like(self.post(image))
        for w in weights:
            augmented = image.copy()
            for _ in range(np.random.randint(1, 4)):
                augmented = self.ops[np.random.randint(len(self.ops))](augmented, self.severity)
            mix += float(w) * self.post(augmented)
        return float(m) * self.post(image) + float(1 - m) * mix


def augmix_view(size: int, severity: float = 1.0, mean=CLIP_MEAN, std=CLIP_STD) -> Callable:
    return AugMix(size, severity=severity, mean=mean, std=std)


def wrapped_uint8_image(tensor: torch.Tensor) -> Image.Image:
    """PIL image of a normalised tensor the way ``to_pil_image(x)`` does it: ×255 then a uint8
    cast that wraps out-of-range values modulo 256 (reproduces the official GOPro views, D8 of docs/DEVIATIONS.md)."""
    wrapped = torch.remainder(torch.trunc(tensor.detach().float().cpu() * 255), 256).to(torch.uint8)
    return Image.fromarray(wrapped.permute(1, 2, 0).numpy())
