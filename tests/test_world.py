"""The synthetic world (tools/kit/world.py): rendering, captions, the dataset through the real loader,
and (slow) the facts the benchmark exists for, through the real scripts."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest

from conftest import REPO
from runs.results import read_metric

from tools.kit import world as W

# Measured on the default world (bench/WORLD.md): zero-shot 25.4 base; CoOp (10 epochs) 36.4 ± 1.5
# base, 35.6 new over seeds 1-3. Chance is 10 %. The world is pre-trained on the machine that runs
# the test, so another CPU's rounding gives another tiny CLIP: seed 1 measured zero-shot 25.4 / 26.8
# and CoOp +11 / +14 on base with AVX2 / generic kernels (ATEN_CPU_CAPABILITY=default). The bands
# leave room for that; the benchmark's 3-seed table (make world) is where "≥ 10 points" is claimed.
ZERO_SHOT_BAND = (15.0, 40.0)
BASE_GAIN_FLOOR = 6.0
NEW_FLOOR = 25.0
DG_CHANCE = 100 / 20  # the DG source and targets hold all 20 classes


def mean_hue(image: np.ndarray) -> float:
    """Hue (in colour-name units) of the most saturated pixels of a uint8 image."""
    pixels = image.reshape(-1, 3) / 255.0
    saturation = pixels.max(1) - pixels.min(1)
    r, g, b = pixels[saturation > 0.5].mean(0)
    return colorsys.rgb_to_hsv(r, g, b)[0] * len(W.COLOURS)


def test_render_draws_the_shape_in_the_colour_and_the_light_shifts_the_hue():
    spec = W.WorldSpec(hue_jitter=0.0)
    rng = np.random.default_rng(0)
    n = 8
    plain = W.render(np.full(n, 1), np.arange(n) % 4, np.zeros(n, int), spec, rng)
    warm = W.render(np.full(n, 1), np.arange(n) % 4, np.ones(n, int), spec, rng)
    assert plain.shape == (n, W.IMAGE_SIZE, W.IMAGE_SIZE, 3) and plain.dtype == np.uint8
    assert [round(mean_hue(x), 1) for x in plain] == [1.0] * n  # orange
    assert [round(mean_hue(x), 1) for x in warm] == [1.0 + spec.shift] * n  # half-way to lime
    # every two shapes differ in at least a tenth of the object's box
    masks = W.shape_masks(*np.meshgrid(np.linspace(-1, 1, 64), np.linspace(-1, 1, 64))).reshape(len(W.SHAPES), -1)
    differ = (masks[:, None] != masks[None]).mean(-1)
    assert (differ + np.eye(len(W.SHAPES)) > 0.1).all()


def test_captions_name_light_colour_and_shape_in_every_template():
    spec = W.WorldSpec()
    concepts = W.captions(spec)
    assert len(concepts) == len(W.LIGHTS) * len(W.COLOURS) * spec.shapes
    assert (0, 0, 0, "red circle") in concepts and (1, 1, 1, "warm orange square") in concepts
    tokens = W.caption_tokens(concepts)
    assert tokens.shape == (len(W.TEMPLATES), len(concepts), 77)
    import clip

    warm = concepts.index((1, 1, 1, "warm orange square"))
    assert tokens[0, warm].tolist() == clip.tokenize("a warm photo of a orange square.")[0].tolist()
    assert tokens[0, 0].tolist() == clip.tokenize("a photo of a red circle.")[0].tolist()


def test_downstream_dataset_loads_with_base_and_new_classes_sharing_colours(tmp_path):
    from tools.kit.build import training_pairs

    spec = W.WorldSpec(trainval_per_class=5, test_per_class=2)
    W.write_downstream(tmp_path / W.DATASET, spec)
    pairs = training_pairs(tmp_path, W.DATASET)
    names = sorted({name for _, name in pairs})
    assert len(names) == 20 and len(pairs) == 20 * 4  # the loader keeps 80 % of trainval for training
    classes = W.downstream_classes()
    base = {f"{W.COLOURS[c]}_{W.SHAPES[s]}" for c, s in classes[:10]}
    new = {f"{W.COLOURS[c]}_{W.SHAPES[s]}" for c, s in classes[10:]}
    assert base | new == set(names)
    assert {n.split("_")[0] for n in base} == {n.split("_")[0] for n in new}
    assert not {n.split("_")[1] for n in base} & {n.split("_")[1] for n in new}
    lines = (tmp_path / W.DATASET / "annotations" / "test.txt").read_text().splitlines()
    assert len(lines) == 40 and lines[0] == "red_circle_6 1 2 1"


def test_domains_change_the_look_and_the_source_keeps_the_pretraining_draws():
    spec = W.WorldSpec(hue_jitter=0.0)
    n = 4
    draw = dict(colour=np.full(n, 2), shape=np.arange(n), light=np.ones(n, int), spec=spec)
    default = W.render(**draw, rng=np.random.default_rng(0))
    assert (W.render(**draw, rng=np.random.default_rng(0), domain=W.SOURCE) == default).all()
    sketch = W.render(**draw, rng=np.random.default_rng(0), domain=W.TARGETS["imagenet_sketch"])
    assert np.median(sketch) > np.median(default) + 50  # pale paper instead of a grey background
    stripes = W.render(**draw, rng=np.random.default_rng(0), domain=W.Domain(fill="stripes"))
    assert (stripes != default).any() and (stripes.reshape(-1, 3) == default.reshape(-1, 3)).all(1).mean() > 0.3
    with pytest.raises(ValueError, match="choose solid, sketch or stripes"):
        W.Domain(fill="outline")


def test_dg_datasets_load_through_their_real_loaders_with_the_same_classes(tmp_path):
    """The source in the ImageNet layout and each target in its own release's layout: every
    dataset's loader sees the world's 20 classes, under the same names and in the same order."""
    from tools.kit.build import read_dataset

    spec = W.WorldSpec(trainval_per_class=2, test_per_class=1)
    W.write_domain_shift(tmp_path, spec)
    names = [W.class_name(c, s) for c, s in W.downstream_classes()]
    source = read_dataset(tmp_path, "imagenet")
    assert source.classnames == sorted(names, key=lambda n: W.dg_wnids()[names.index(n)]) == names
    assert len(source.test) == len(names)
    for target in W.TARGETS:
        dataset = read_dataset(tmp_path, target)
        assert dataset.classnames == names, target
        assert sorted(item.label for item in dataset.test) == list(range(len(names))), target
    assert (tmp_path / "imagenet-adversarial" / "imagenet-a" / "README.txt").is_file()


def test_a_target_whose_look_changed_is_written_again_and_the_others_are_kept(tmp_path, monkeypatch):
    """A world written before a target's look changed gets that target's new images on the next
    build; unchanged targets and the source (trained runs depend on it) are left as they are."""
    spec = W.WorldSpec(trainval_per_class=1, test_per_class=1)
    W.write_domain_shift(tmp_path, spec)
    sketch, v2, source = (tmp_path / W.dg_folders(name)[1] for name in ("imagenet_sketch", "imagenetv2", "imagenet"))
    for folder in (sketch, v2, source):
        (folder / "kept.txt").write_text("")
    monkeypatch.setitem(W.TARGETS, "imagenet_sketch", W.Domain(fill="sketch", background="pale", scale=0.9))
    W.write_domain_shift(tmp_path, spec)
    assert not (sketch / "kept.txt").exists() and (v2 / "kept.txt").exists() and (source / "kept.txt").exists()
    assert (sketch / "world_domain.txt").read_text() == repr(W.TARGETS["imagenet_sketch"])
    assert len(list((sketch / "images").rglob("*.JPEG"))) == 20


def test_the_world_describes_the_classes_of_every_dataset_for_coprompt(tmp_path, monkeypatch):
    """CoPrompt builds its model from per-class descriptions: the world writes them for the
    downstream dataset, the DG source and every target (without them CoPrompt's DG runs stop)."""
    import json
    from pathlib import Path

    import torch

    from trainers.descriptions import default_path

    monkeypatch.setattr(W, "pretrain", lambda spec, **dims: torch.nn.Linear(1, 1))  # no tiny CLIP needed here
    world = W.build_world(tmp_path, W.WorldSpec(trainval_per_class=3, test_per_class=1), teacher=False)
    names = {W.class_name(c, s) for c, s in W.downstream_classes()}
    for dataset in ("ImageNet", "ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"):
        descriptions = json.loads(Path(default_path(str(world.data), dataset)).read_text())
        assert set(descriptions) == names, dataset


@pytest.mark.slow
def test_prompt_learning_beats_zero_shot_on_the_world(tmp_path_factory, tmp_path):
    """The benchmark's point, through the real scripts: zero-shot CLIP is above chance (10 %) but
    leaves room, and CoOp learns the light from 16 shots of the base classes."""
    from conftest import run_script

    world = W.build_world(tmp_path_factory.mktemp("world"), teacher=False)
    env = {"DATA": str(world.data), "OUTPUT": str(tmp_path), "EPOCHS": "10", "EXTRA_OPTS": " ".join(world.opts())}
    run_script("zsclip/zeroshot.sh", W.DATASET, "base", env=env)
    run_script("coop/base2new_train.sh", W.DATASET, "1", env=env)
    run_script("coop/base2new_test.sh", W.DATASET, "1", env=env)
    zero_shot = read_metric(tmp_path / "zsclip" / "base" / W.DATASET / "log.txt")
    coop = [read_metric(tmp_path / "base2new" / split / W.DATASET / "shots_16" / "CoOp" / "vit_b16_ctxv1" / "seed1"
                        / "log.txt") for split in ("train_base", "test_new")]
    assert ZERO_SHOT_BAND[0] < zero_shot < ZERO_SHOT_BAND[1], zero_shot
    assert coop[0] >= zero_shot + BASE_GAIN_FLOOR, (zero_shot, coop)
    assert coop[1] > NEW_FLOOR, coop
    # Domain generalisation: every target shifts the source's look, so zero-shot CLIP (trained on
    # nothing here) does worse on each than on the source, and still above chance. On six tiny CLIPs
    # (seeds 0-2, native and generic kernels) each target stayed at least 2.5 points below the
    # source and 1.6 above chance (bench/WORLD.md); the first targets had margins under a point and
    # failed here with generic kernels.
    run_script("zsclip/zeroshot.sh", "imagenet", "all", env=env)
    source = read_metric(tmp_path / "zsclip" / "all" / "imagenet" / "log.txt")
    for target in W.TARGETS:
        run_script("zsclip/zeroshot.sh", target, "all", env=env)
        accuracy = read_metric(tmp_path / "zsclip" / "all" / target / "log.txt")
        assert DG_CHANCE < accuracy < source, (target, accuracy, source)
