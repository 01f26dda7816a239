"""The frozen-feature cache (trainers/feature_cache.py): hits, keys, damaged files, real splits."""
from __future__ import annotations

import dataclasses
import os
import pickle
import warnings

import pytest
import torch

from conftest import make_trainer
from trainers.feature_cache import FeatureCache, FeatureKey, encode_split, split_key, weights_digest

KEY = FeatureKey(backbone="ViT-B/16", weights="0123456789abcdef", precision="torch.float16", dataset="OxfordPets",
                 split="test", subsample="all", shots=16, seed=1, items="fedcba9876543210", transform="T()")


class CountingEncoder:
    """An ``encode`` callable that says how often it ran and returns different tensors each time."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return torch.randn(5, 4) + self.calls, torch.arange(5)


def quiet_cache(folder):
    lines = []
    return FeatureCache(str(folder), log=lines.append), lines


def test_second_read_comes_from_disk_and_says_so(tmp_path):
    cache, lines = quiet_cache(tmp_path)
    encode = CountingEncoder()
    first = cache.load_or_encode(KEY, encode)
    second = cache.load_or_encode(KEY, encode)
    assert encode.calls == 1 and (cache.hits, cache.misses) == (1, 1)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert "encoded test features" in lines[0] and "read test features" in lines[1] and "saving" in lines[1]
    assert cache.seconds_saved >= 0.0
    # another object on the same folder (a second method's run) reads it too
    other, _ = quiet_cache(tmp_path)
    other.load_or_encode(KEY, encode)
    assert encode.calls == 1 and other.hits == 1


@pytest.mark.parametrize("field, value", [
    ("weights", "ffffffffffffffff"), ("backbone", "ViT-B/32"), ("precision", "torch.float32"),
    ("dataset", "DescribableTextures"), ("split", "val"), ("subsample", "base"), ("shots", 4), ("seed", 2),
    ("items", "0000000000000000"), ("transform", "U()"), ("augment_pass", 3),
])
def test_any_changed_key_field_encodes_again(tmp_path, field, value):
    cache, _ = quiet_cache(tmp_path)
    encode = CountingEncoder()
    cache.load_or_encode(KEY, encode)
    changed = dataclasses.replace(KEY, **{field: value})
    assert changed.filename() != KEY.filename()
    cache.load_or_encode(changed, encode)
    assert encode.calls == 2 and cache.hits == 0


def damage_truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def damage_edit_tensors(path):
    entry = torch.load(path, weights_only=True)
    entry["features"][0, 0] += 1.0  # the digest still describes the old tensors
    torch.save(entry, path)


def damage_other_key(path):
    entry = torch.load(path, weights_only=True)
    entry["key"] = dataclasses.replace(KEY, seed=7).text()
    torch.save(entry, path)


class Payload:
    """Unpickling it would create ``marker``: the cache must never run it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def damage_pickle(path):
    with open(path, "wb") as stream:
        pickle.dump({"features": Payload(path.parent / "unpickled")}, stream)


@pytest.mark.parametrize("damage", [damage_truncate, damage_edit_tensors, damage_other_key, damage_pickle])
def test_a_damaged_file_is_encoded_again_never_trusted(tmp_path, damage):
    cache, _ = quiet_cache(tmp_path)
    encode = CountingEncoder()
    cache.load_or_encode(KEY, encode)
    damage(tmp_path / KEY.filename())
    with pytest.warns(UserWarning, match="encoding again"):
        features, _ = cache.load_or_encode(KEY, encode)
    assert encode.calls == 2 and cache.hits == 0
    # the replacement is sound: read back, equal to what was just encoded
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, _ = cache.load_or_encode(KEY, encode)
    assert encode.calls == 2 and torch.equal(again, features)
    assert not (tmp_path / "unpickled").exists()


def test_no_temporary_file_is_left_behind(tmp_path):
    cache, _ = quiet_cache(tmp_path)
    cache.load_or_encode(KEY, CountingEncoder())
    assert [p.name for p in tmp_path.iterdir()] == [KEY.filename()]


def test_keys_of_real_splits_follow_the_data_the_weights_and_the_transform(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path, "GDA", "vit_b16")
    cfg, dataset = trainer.cfg, trainer.dm.dataset
    test_transform, train_transform = trainer.transform(is_train=False), trainer.transform(is_train=True)
    key = split_key(cfg, trainer.backbone, "test", dataset.test, test_transform)
    assert key == split_key(cfg, trainer.backbone, "test", dataset.test, test_transform)
    assert key.items != split_key(cfg, trainer.backbone, "test", dataset.test[:-1], test_transform).items
    assert key.transform != split_key(cfg, trainer.backbone, "test", dataset.test, train_transform).transform
    digest = weights_digest(trainer.backbone)
    with torch.no_grad():
        next(trainer.backbone.clip.parameters()).view(-1)[0] += 1.0
    from trainers import feature_cache

    feature_cache._WEIGHT_DIGESTS.clear()
    assert weights_digest(trainer.backbone) != digest


def test_an_augmented_pass_is_the_same_draw_each_time_and_passes_differ(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path, "GDA", "vit_b16")
    source, transform = trainer.dm.dataset.train_x[:6], trainer.transform(is_train=True)
    first, labels = encode_split(trainer.cfg, trainer.backbone, source, transform, seed=11)
    again, _ = encode_split(trainer.cfg, trainer.backbone, source, transform, seed=11)
    other, _ = encode_split(trainer.cfg, trainer.backbone, source, transform, seed=12)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert labels.tolist() == [item.label for item in source]


def test_the_cache_folder_is_not_a_setting_of_the_run():
    from runs.identity import counts

    assert not counts("TRAINER.FEATURE_CACHE_DIR", "GDA") and counts("TRAINER.GDA.AUGMENT_EPOCH", "GDA")
