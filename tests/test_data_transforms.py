"""build_transform: fixed training order, test pipeline shape, every accepted name, printed lines."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from dassl.config import get_cfg_default
from dassl.data.transforms import INTERPOLATION_MODES, build_transform
from dassl.data.transforms.autoaugment import CIFAR10Policy, ImageNetPolicy, SVHNPolicy
from dassl.data.transforms.randaugment import RandAugment, RandAugment2, RandAugmentFixMatch
from dassl.data.transforms.transforms import (
    AVAI_CHOICES,
    Cutout,
    GaussianNoise,
    InstanceNormalization,
    Random2DTranslation,
)
from numerics import assert_close

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# Every name except the two crops (which replace the initial Resize) in the fixed training order.
FIXED_ORDER = [
    (None, T.Resize),
    ("random_translation", Random2DTranslation),
    ("random_flip", T.RandomHorizontalFlip),
    ("imagenet_policy", ImageNetPolicy),
    ("cifar10_policy", CIFAR10Policy),
    ("svhn_policy", SVHNPolicy),
    ("randaugment", RandAugment),
    ("randaugment_fixmatch", RandAugmentFixMatch),
    ("randaugment2", RandAugment2),
    ("colorjitter", T.ColorJitter),
    ("randomgrayscale", T.RandomGrayscale),
    ("gaussian_blur", T.RandomApply),
    (None, T.ToTensor),
    ("cutout", Cutout),
    ("normalize", T.Normalize),
    ("gaussian_noise", GaussianNoise),
    ("instance_norm", InstanceNormalization),
]


def make_cfg(transforms, size=(32, 32), interpolation="bilinear"):
    cfg = get_cfg_default()
    cfg.INPUT.TRANSFORMS = list(transforms)
    cfg.INPUT.SIZE = size
    cfg.INPUT.INTERPOLATION = interpolation
    return cfg


def step_types(compose):
    return [type(step) for step in compose.transforms]


def rgb_image(width=40, height=30, seed=0):
    rng = np.random.RandomState(seed)
    return Image.fromarray(rng.randint(0, 256, size=(height, width, 3), dtype=np.uint8))


def test_interpolation_modes():
    assert INTERPOLATION_MODES == {
        "bilinear": InterpolationMode.BILINEAR,
        "bicubic": InterpolationMode.BICUBIC,
        "nearest": InterpolationMode.NEAREST,
    }


def test_clip_config_pipelines():
    cfg = make_cfg(["random_resized_crop", "random_flip", "normalize"], size=(224, 224), interpolation="bicubic")
    cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD = CLIP_MEAN, CLIP_STD
    train = build_transform(cfg, is_train=True)
    assert step_types(train) == [T.RandomResizedCrop, T.RandomHorizontalFlip, T.ToTensor, T.Normalize]
    rrc = train.transforms[0]
    assert rrc.size == (224, 224) and rrc.scale == (0.08, 1.0)
    assert rrc.interpolation == InterpolationMode.BICUBIC
    assert list(train.transforms[3].mean) == CLIP_MEAN

    test = build_transform(cfg, is_train=False)
    assert step_types(test) == [T.Resize, T.CenterCrop, T.ToTensor, T.Normalize]
    assert test.transforms[0].size == 224  # an int: the shorter side
    assert test.transforms[0].interpolation == InterpolationMode.BICUBIC


def test_training_order_is_fixed_whatever_the_list_order():
    names = [name for name, _ in FIXED_ORDER if name] + ["center_crop"]
    expected = [cls for _, cls in FIXED_ORDER]
    for seed in range(3):
        shuffled = names[:]
        random.Random(seed).shuffle(shuffled)
        assert step_types(build_transform(make_cfg(shuffled))) == expected


def test_crops_replace_the_initial_resize_and_keep_their_slot():
    types = step_types(build_transform(make_cfg(["random_flip", "random_crop", "random_translation"])))
    assert types == [Random2DTranslation, T.RandomCrop, T.RandomHorizontalFlip, T.ToTensor]
    types = step_types(build_transform(make_cfg(["random_resized_crop", "random_crop"])))
    assert types == [T.RandomCrop, T.RandomResizedCrop, T.ToTensor]


def test_minimal_training_pipeline_resizes_to_exact_size():
    cfg = make_cfg([], size=(20, 28))
    tfm = build_transform(cfg)
    assert step_types(tfm) == [T.Resize, T.ToTensor]
    assert tfm(rgb_image(50, 31)).shape == (3, 20, 28)


def test_center_crop_has_no_effect_on_training():
    assert step_types(build_transform(make_cfg(["center_crop"]))) == [T.Resize, T.ToTensor]


def test_test_pipeline_resizes_shorter_side_then_crops():
    cfg = make_cfg(["random_flip", "cutout", "gaussian_noise", "instance_norm"], size=(16, 24))
    tfm = build_transform(cfg, is_train=False)
    assert step_types(tfm) == [T.Resize, T.CenterCrop, T.ToTensor, InstanceNormalization]
    assert tfm.transforms[0].size == 24
    # A wide 60x30 image: shorter side 30 -> 24 (so 48x24), then a 16x24 centre crop.
    assert tfm(rgb_image(60, 30)).shape == (3, 16, 24)
    # Deterministic: no random step survives in the test pipeline.
    img = rgb_image(33, 47)
    assert torch.equal(tfm(img), tfm(img))


def test_test_pipeline_normalizes_when_asked():
    cfg = make_cfg(["normalize"], size=(8, 8))
    cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    out = build_transform(cfg, is_train=False)(Image.new("RGB", (8, 8), (255, 0, 255)))
    assert_close(out[:, 0, 0], torch.tensor([1.0, -1.0, 1.0]), what="normalised magenta pixel")


def test_every_accepted_name_runs_on_a_real_image():
    cfg = make_cfg(AVAI_CHOICES, size=(24, 24))
    cfg.INPUT.GB_K = 3
    tfm = build_transform(cfg)
    random.seed(0)
    torch.manual_seed(0)
    np.random.seed(0)
    for seed in range(4):
        out = tfm(rgb_image(40, 30, seed))
        assert out.shape == (3, 24, 24) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_unknown_name_is_rejected_naming_it_and_the_choices():
    with pytest.raises(AssertionError) as info:
        build_transform(make_cfg(["random_flip", "random_flipp"]))
    message = str(info.value)
    assert "random_flipp" in message and "random_resized_crop" in message and "INPUT.TRANSFORMS" in message


def test_explicit_choices_override_the_config():
    cfg = make_cfg(["random_flip"])
    assert step_types(build_transform(cfg, choices=["normalize"])) == [T.Resize, T.ToTensor, T.Normalize]


def test_no_transform_returns_none(capsys):
    cfg = make_cfg(["random_flip"])
    cfg.INPUT.NO_TRANSFORM = True
    assert build_transform(cfg) is None
    assert "Note: no transform is applied!" in capsys.readouterr().out


def test_printed_lines(capsys):
    build_transform(make_cfg(["random_flip", "normalize"], size=(16, 24)), is_train=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Building transform_train"
    assert len(lines) == 5 and all(line.startswith("+ ") for line in lines[1:])
    assert "+ random flip" in lines

    build_transform(make_cfg(["normalize"], size=(16, 24)), is_train=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["Building transform_test", "+ resize the smaller edge to 24", "+ 16x24 center crop"]


def test_bad_interpolation_names_the_key():
    with pytest.raises(ValueError, match="INPUT.INTERPOLATION"):
        build_transform(make_cfg([], interpolation="lanczos"))


def test_random_translation_sizes_and_both_branches():
    tfm = Random2DTranslation(16, 24)
    img = rgb_image(50, 40)
    random.seed(0)
    outs = [tfm(img) for _ in range(20)]
    assert all(o.size == (24, 16) for o in outs)
    plain = T.functional.resize(img, [16, 24])
    n_plain = sum(np.array_equal(np.asarray(o), np.asarray(plain)) for o in outs)
    assert 0 < n_plain < 20  # p = 0.5: some plain resizes, some translated crops


def test_cutout_zeroes_a_clipped_square():
    np.random.seed(0)
    out = Cutout(n_holes=1, length=4)(torch.ones(3, 10, 10))
    zeros = (out[0] == 0)
    assert 0 < zeros.sum() <= 16
    assert torch.equal(zeros, out[1] == 0) and torch.equal(zeros, out[2] == 0)


def test_gaussian_noise_applies_with_probability():
    random.seed(1)
    img = torch.zeros(3, 8, 8)
    outs = [GaussianNoise(0.0, 0.15)(img) for _ in range(30)]
    changed = sum(not torch.equal(o, img) for o in outs)
    assert 0 < changed < 30


def test_instance_norm_standardises_each_channel():
    x = torch.rand(3, 9, 7) * 5 + 2
    out = InstanceNormalization()(x)
    flat = out.reshape(3, -1)
    # rounding is relative to the input values (up to 7), not to the mean of ~0
    assert_close(flat.mean(1), torch.zeros(3), what="channel means", scale=x.abs().max())
    assert_close(flat.std(1), torch.ones(3), what="channel stds", scale=x.abs().max())


@pytest.mark.parametrize("aug", [RandAugment(2, 10), RandAugment(3, 30), RandAugmentFixMatch(3), RandAugment2(3),
                                 ImageNetPolicy(), CIFAR10Policy(), SVHNPolicy()])
def test_pil_augmenters_keep_size_and_mode(aug):
    random.seed(0)
    torch.manual_seed(0)
    img = rgb_image(20, 16)
    for _ in range(10):
        out = aug(img)
        assert out.size == img.size and out.mode == "RGB"


def test_randaugment_magnitude_range():
    with pytest.raises(ValueError, match="RANDAUGMENT_M"):
        RandAugment(2, 31)


def test_randaugment_is_reproducible_under_seed():
    img = rgb_image(20, 16)
    random.seed(3)
    first = [np.asarray(RandAugment(2, 15)(img)) for _ in range(5)]
    random.seed(3)
    second = [np.asarray(RandAugment(2, 15)(img)) for _ in range(5)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_randaugment_op_tables_and_every_op():
    from dassl.data.transforms.randaugment import FIXMATCH_OPS, RANDAUGMENT2_OPS, RANDAUGMENT_OPS

    assert (len(RANDAUGMENT_OPS), len(FIXMATCH_OPS), len(RANDAUGMENT2_OPS)) == (16, 14, 15)
    assert {op.fn.__name__ for op in RANDAUGMENT_OPS if op.signed} == {
        "rotate", "shear_x", "shear_y", "translate_x_abs", "translate_y_abs"}
    img = rgb_image(20, 16)
    random.seed(0)
    for op in RANDAUGMENT_OPS + FIXMATCH_OPS + RANDAUGMENT2_OPS:
        for fraction in (0.0, 0.5, 1.0):
            out = op.fn(img, op.at(fraction))
            assert out.size == img.size and out.mode == "RGB", op.fn.__name__


def test_solarize_add_only_shifts_dark_values():
    from dassl.data.transforms.randaugment import solarize_add

    img = Image.fromarray(np.array([[[10, 127, 200]]], dtype=np.uint8))
    assert np.asarray(solarize_add(img, 100)).tolist() == [[[110, 227, 200]]]
