"""RandAugment variants for the ``randaugment``, ``randaugment_fixmatch`` and ``randaugment2``
transform names (PIL in, PIL out; randomness from Python's ``random`` module).

Every operation has the signature ``op(img, v) -> img``; an operation table lists
``(op, min, max)`` and, for RandAugment, whether the op is geometric (its magnitude then gets a
random sign, so e.g. rotations go both ways). The FixMatch and "2" tables use ranges that are
already symmetric around zero instead.
"""

from __future__ import annotations

import random
from typing import Callable, List, NamedTuple

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

__all__ = ["RandAugment", "RandAugmentFixMatch", "RandAugment2"]

GREY_FILL = (128, 128, 128)
CUTOUT_COLOUR = (125, 123, 114)  # mean ImageNet colour, as in the RandAugment reference code


def _affine(img: Image.Image, matrix) -> Image.Image:
    return img.transform(img.size, Image.AFFINE, matrix, fillcolor=GREY_FILL)


def identity(img, v):
    return img


def auto_contrast(img, v):
    return ImageOps.autocontrast(img)


def equalize(img, v):
    return ImageOps.equalize(img)


def invert(img, v):
    return ImageOps.invert(img)


def rotate(img, v):
    return img.rotate(v, fillcolor=GREY_FILL)


def posterize(img, v):
    return ImageOps.posterize(img, int(v))


def solarize(img, v):
    return ImageOps.solarize(img, v)


def solarize_add(img, v, threshold: int = 128):
    """Add ``v`` to every channel value below ``threshold`` (clipped to 255)."""
    arr = np.asarray(img).astype(np.int64)
    added = np.clip(arr + int(v), 0, 255)
    return Image.fromarray(np.where(arr < threshold, added, arr).astype(np.uint8))


def _enhancer(kind) -> Callable:
    def op(img, v):
        return kind(img).enhance(v)

    op.__name__ = kind.__name__.lower()
    return op


color = _enhancer(ImageEnhance.Color)
contrast = _enhancer(ImageEnhance.Contrast)
brightness = _enhancer(ImageEnhance.Brightness)
sharpness = _enhancer(ImageEnhance.Sharpness)


def shear_x(img, v):
    return _affine(img, (1, v, 0, 0, 1, 0))


def shear_y(img, v):
    return _affine(img, (1, 0, 0, v, 1, 0))


def translate_x_abs(img, v):
    return _affine(img, (1, 0, v, 0, 1, 0))


def translate_y_abs(img, v):
    return _affine(img, (1, 0, 0, 0, 1, v))


def translate_x(img, v):
    """``v`` is a fraction of the image width."""
    return translate_x_abs(img, v * img.size[0])


def translate_y(img, v):
    """``v`` is a fraction of the image height."""
    return translate_y_abs(img, v * img.size[1])


def cutout_abs(img, v):
    """Paint a ``v`` x ``v`` square (clipped at the borders) at a random centre."""
    size = int(v)
    if size <= 0:
        return img
    w, h = img.size
    cx, cy = random.uniform(0, w), random.uniform(0, h)
    x0, y0 = int(max(0, cx - size / 2.0)), int(max(0, cy - size / 2.0))
    x1, y1 = min(w, x0 + size), min(h, y0 + size)
    img = img.copy()
    img.paste(CUTOUT_COLOUR, (x0, y0, x1, y1))
    return img


class Op(NamedTuple):
    fn: Callable
    low: float
    high: float
    signed: bool = False  # geometric: RandAugment flips the magnitude's sign with p = 0.5

    def at(self, fraction: float) -> float:
        """Magnitude at ``fraction`` (0..1) of the way from ``low`` to ``high``."""
        return fraction * (self.high - self.low) + self.low


RANDAUGMENT_OPS: List[Op] = [
    Op(auto_contrast, 0, 1),
    Op(equalize, 0, 1),
    Op(invert, 0, 1),
    Op(rotate, 0, 30, signed=True),
    Op(posterize, 4, 8),
    Op(solarize, 0, 256),
    Op(solarize_add, 0, 110),
    Op(color, 0.1, 1.9),
    Op(contrast, 0.1, 1.9),
    Op(brightness, 0.1, 1.9),
    Op(sharpness, 0.1, 1.9),
    Op(shear_x, 0.0, 0.3, signed=True),
    Op(shear_y, 0.0, 0.3, signed=True),
    Op(cutout_abs, 0, 40),
    Op(translate_x_abs, 0.0, 100, signed=True),
    Op(translate_y_abs, 0.0, 100, signed=True),
]

FIXMATCH_OPS: List[Op] = [
    Op(auto_contrast, 0, 1),
    Op(brightness, 0.05, 0.95),
    Op(color, 0.05, 0.95),
    Op(contrast, 0.05, 0.95),
    Op(equalize, 0, 1),
    Op(identity, 0, 1),
    Op(posterize, 4, 8),
    Op(rotate, -30, 30),
    Op(sharpness, 0.05, 0.95),
    Op(shear_x, -0.3, 0.3),
    Op(shear_y, -0.3, 0.3),
    Op(solarize, 0, 256),
    Op(translate_x, -0.3, 0.3),
    Op(translate_y, -0.3, 0.3),
]

RANDAUGMENT2_OPS: List[Op] = [
    Op(auto_contrast, 0, 1),
    Op(brightness, 0.1, 1.9),
    Op(color, 0.1, 1.9),
    Op(contrast, 0.1, 1.9),
    Op(equalize, 0, 1),
    Op(identity, 0, 1),
    Op(invert, 0, 1),
    Op(posterize, 4, 8),
    Op(rotate, -30, 30),
    Op(sharpness, 0.1, 1.9),
    Op(shear_x, -0.3, 0.3),
    Op(shear_y, -0.3, 0.3),
    Op(solarize, 0, 256),
    Op(translate_x, -0.3, 0.3),
    Op(translate_y, -0.3, 0.3),
]


class RandAugment:
    """``n`` ops drawn with replacement, all at the fixed magnitude ``m`` on a 0..30 scale."""

    def __init__(self, n: int = 2, m: int = 10):
        if not 0 <= m <= 30:
            raise ValueError(f"RandAugment magnitude must be in [0, 30] (INPUT.RANDAUGMENT_M), got {m}")
        self.n = n
        self.m = m
        self.augment_list = RANDAUGMENT_OPS

    def __call__(self, img: Image.Image) -> Image.Image:
        for op in random.choices(self.augment_list, k=self.n):
            value = op.at(self.m / 30)
            if op.signed and random.random() < 0.5:
                value = -value
            img = op.fn(img, value)
        return img


class RandAugmentFixMatch:
    """``n`` ops drawn with replacement from the FixMatch table, each at a random magnitude."""

    def __init__(self, n: int = 2):
        self.n = n
        self.augment_list = FIXMATCH_OPS

    def __call__(self, img: Image.Image) -> Image.Image:
        for op in random.choices(self.augment_list, k=self.n):
            img = op.fn(img, op.at(random.random()))
        return img


class RandAugment2:
    """``n`` ops drawn with replacement; each fires with probability ``p`` at a random magnitude."""

    def __init__(self, n: int = 2, p: float = 0.6):
        self.n = n
        self.p = p
        self.augment_list = RANDAUGMENT2_OPS

    def __call__(self, img: Image.Image) -> Image.Image:
        for op in random.choices(self.augment_list, k=self.n):
            if random.random() < self.p:
                img = op.fn(img, op.at(random.random()))
        return img
