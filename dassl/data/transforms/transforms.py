"""``build_transform``: the train/test image pipelines selected by ``INPUT.TRANSFORMS``.

The training pipeline has a FIXED order (the order of names in the config list is irrelevant);
each step is included only if its name is listed. The test pipeline is always
resize-shorter-side -> center crop -> to tensor (-> normalize) (-> instance norm). Every step
that gets added prints a ``+ ...`` line, which lands in ``log.txt``.
"""

from __future__ import annotations

import random
from typing import Callable, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from .autoaugment import CIFAR10Policy, ImageNetPolicy, SVHNPolicy
from .randaugment import RandAugment, RandAugment2, RandAugmentFixMatch

__all__ = [
    "AVAI_CHOICES",
    "INTERPOLATION_MODES",
    "build_transform",
    "Random2DTranslation",
    "InstanceNormalization",
    "Cutout",
    "GaussianNoise",
]

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

AVAI_CHOICES = [
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",  # accepted for compatibility; has no effect on either pipeline
    "cutout",
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
]


class Random2DTranslation:
    """With probability ``p``: enlarge to 1.125x (bilinear) and crop an ``height`` x ``width``
    window at a uniformly random integer offset; otherwise plain (bilinear) resize."""

    def __init__(self, height: int, width: int, p: float = 0.5, interpolation=InterpolationMode.BILINEAR):
        self.height = height
        self.width = width
        self.p = p
        self.interpolation = interpolation

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.uniform(0, 1) > self.p:
            return T.functional.resize(img, [self.height, self.width], interpolation=self.interpolation)
        new_h, new_w = int(round(self.height * 1.125)), int(round(self.width * 1.125))
        enlarged = T.functional.resize(img, [new_h, new_w], interpolation=self.interpolation)
        top = random.randint(0, new_h - self.height)
        left = random.randint(0, new_w - self.width)
        return T.functional.crop(enlarged, top, left, self.height, self.width)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size=({self.height}, {self.width}), p={self.p})"


class InstanceNormalization:
    """Standardise each channel of one image over its H*W pixels: ``(x - mean_c) / (std_c + eps)``.

    ``std`` is torch's default (unbiased) estimator.
    """

    def __init__(self, eps: float = 1e-8):
        self.eps = eps

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        channels = img.shape[0]
        flat = img.reshape(channels, -1)
        mean = flat.mean(dim=1).view(channels, 1, 1)
        std = flat.std(dim=1).view(channels, 1, 1)
        return (img - mean) / (std + self.eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps})"


class Cutout:
    """Zero ``n_holes`` squares of side ``length`` centred at uniformly random pixels (clipped at
    the borders) of a ``[C, H, W]`` tensor. Centres come from NumPy's global RNG."""

    def __init__(self, n_holes: int = 1, length: int = 16):
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        mask = torch.ones((h, w), dtype=img.dtype)
        half = self.length // 2
        for _ in range(self.n_holes):
            y, x = int(np.random.randint(h)), int(np.random.randint(w))
            mask[max(0, y - half):min(h, y + half), max(0, x - half):min(w, x + half)] = 0
        return img * mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_holes={self.n_holes}, length={self.length})"


class GaussianNoise:
    """With probability ``p`` add i.i.d. ``N(mean, std)`` noise to a tensor image."""

    def __init__(self, mean: float = 0.0, std: float = 0.15, p: float = 0.5):
        self.mean = mean
        self.std = std
        self.p = p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if random.uniform(0, 1) > self.p:
            return img
        return img + torch.randn(img.size()) * self.std + self.mean

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std}, p={self.p})"


class _Pipeline:
    """Collects steps in order, printing ``+ <description>`` for each."""

    def __init__(self, title: str):
        print(f"Building {title}")
        self.steps: List[Callable] = []

    def add(self, step: Callable, description: str) -> None:
        print(f"+ {description}")
        self.steps.append(step)

    def compose(self) -> T.Compose:
        return T.Compose(self.steps)


def _check_choices(choices: Sequence[str]) -> None:
    unknown = [name for name in choices if name not in AVAI_CHOICES]
    if unknown:
        raise AssertionError(
            f"Unknown transform name(s) {unknown} in INPUT.TRANSFORMS; accepted names: {AVAI_CHOICES}"
        )


def _input_size(cfg) -> Tuple[int, int]:
    size = tuple(int(s) for s in cfg.INPUT.SIZE)
    if len(size) != 2:
        raise ValueError(f"INPUT.SIZE must be (height, width), got {cfg.INPUT.SIZE!r}")
    return size


def _interpolation(cfg) -> InterpolationMode:
    name = cfg.INPUT.INTERPOLATION
    if name not in INTERPOLATION_MODES:
        raise ValueError(f"INPUT.INTERPOLATION must be one of {list(INTERPOLATION_MODES)}, got {name!r}")
    return INTERPOLATION_MODES[name]


def _add_normalize(pipeline: _Pipeline, cfg) -> None:
    mean, std = list(cfg.INPUT.PIXEL_MEAN), list(cfg.INPUT.PIXEL_STD)
    pipeline.add(T.Normalize(mean=mean, std=std), f"normalization (mean={mean}, std={std})")


def build_transform(cfg, is_train: bool = True, choices: Sequence[str] | None = None):
    """Train (``is_train``) or test pipeline for ``choices`` (default ``cfg.INPUT.TRANSFORMS``).

    Returns None (after a note) when ``INPUT.NO_TRANSFORM`` is set.
    """
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    if choices is None:
        choices = cfg.INPUT.TRANSFORMS
    _check_choices(choices)
    if is_train:
        return _build_transform_train(cfg, choices)
    return _build_transform_test(cfg, choices)


def _build_transform_train(cfg, choices: Sequence[str]) -> T.Compose:
    inp = cfg.INPUT
    height, width = size = _input_size(cfg)
    interpolation = _interpolation(cfg)
    pipeline = _Pipeline("transform_train")

    if "random_crop" not in choices and "random_resized_crop" not in choices:
        pipeline.add(T.Resize(size, interpolation=interpolation), f"resize to {height}x{width}")
    if "random_translation" in choices:
        pipeline.add(Random2DTranslation(height, width), "random translation")
    if "random_crop" in choices:
        pipeline.add(T.RandomCrop(size, padding=inp.CROP_PADDING),
                     f"random crop (padding = {inp.CROP_PADDING})")
    if "random_resized_crop" in choices:
        scale = tuple(inp.RRCROP_SCALE)
        pipeline.add(T.RandomResizedCrop(size, scale=scale, interpolation=interpolation),
                     f"random resized crop (size={size}, scale={scale})")
    if "random_flip" in choices:
        pipeline.add(T.RandomHorizontalFlip(), "random flip")
    if "imagenet_policy" in choices:
        pipeline.add(ImageNetPolicy(), "imagenet policy")
    if "cifar10_policy" in choices:
        pipeline.add(CIFAR10Policy(), "cifar10 policy")
    if "svhn_policy" in choices:
        pipeline.add(SVHNPolicy(), "svhn policy")
    if "randaugment" in choices:
        pipeline.add(RandAugment(inp.RANDAUGMENT_N, inp.RANDAUGMENT_M),
                     f"randaugment (n={inp.RANDAUGMENT_N}, m={inp.RANDAUGMENT_M})")
    if "randaugment_fixmatch" in choices:
        pipeline.add(RandAugmentFixMatch(inp.RANDAUGMENT_N), f"randaugment_fixmatch (n={inp.RANDAUGMENT_N})")
    if "randaugment2" in choices:
        pipeline.add(RandAugment2(inp.RANDAUGMENT_N), f"randaugment2 (n={inp.RANDAUGMENT_N})")
    if "colorjitter" in choices:
        jitter = (inp.COLORJITTER_B, inp.COLORJITTER_C, inp.COLORJITTER_S, inp.COLORJITTER_H)
        pipeline.add(T.ColorJitter(*jitter), "color jitter (brightness={}, contrast={}, saturation={}, hue={})".format(*jitter))
    if "randomgrayscale" in choices:
        pipeline.add(T.RandomGrayscale(p=inp.RGS_P), f"random gray scale (p={inp.RGS_P})")
    if "gaussian_blur" in choices:
        blur = T.RandomApply([T.GaussianBlur(kernel_size=inp.GB_K)], p=inp.GB_P)
        pipeline.add(blur, f"gaussian blur (kernel={inp.GB_K}, p={inp.GB_P})")

    pipeline.add(T.ToTensor(), "to torch tensor of range [0, 1]")

    if "cutout" in choices:
        pipeline.add(Cutout(inp.CUTOUT_N, inp.CUTOUT_LEN), f"cutout (n_holes={inp.CUTOUT_N}, length={inp.CUTOUT_LEN})")
    if "normalize" in choices:
        _add_normalize(pipeline, cfg)
    if "gaussian_noise" in choices:
        pipeline.add(GaussianNoise(inp.GN_MEAN, inp.GN_STD), f"gaussian noise (mean={inp.GN_MEAN}, std={inp.GN_STD})")
    if "instance_norm" in choices:
        pipeline.add(InstanceNormalization(), "instance normalization")
    return pipeline.compose()


def _build_transform_test(cfg, choices: Sequence[str]) -> T.Compose:
    height, width = size = _input_size(cfg)
    pipeline = _Pipeline("transform_test")
    # An int size resizes the SHORTER side (aspect ratio kept); the crop then cuts (H, W).
    pipeline.add(T.Resize(max(size), interpolation=_interpolation(cfg)), f"resize the smaller edge to {max(size)}")
    pipeline.add(T.CenterCrop(size), f"{height}x{width} center crop")
    pipeline.add(T.ToTensor(), "to torch tensor of range [0, 1]")
    if "normalize" in choices:
        _add_normalize(pipeline, cfg)
    if "instance_norm" in choices:
        pipeline.add(InstanceNormalization(), "instance normalization")
    return pipeline.compose()
