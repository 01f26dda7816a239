"""Every benchmark loader on its miniature fixture (real layout, tiny images) in tmp_path.

Expected names and sizes are those of the fixtures (tools/kit/make_fixture_datasets.py), written here independently of the
loaders and of the fixture writer.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from test_datasets_common import dataset_class, fixture, load, make_cfg, triples

from datasets.coop_common import DatasetFormatError, DatasetLayoutError
from datasets.imagenet_a import ImageNetA
from datasets.imagenet_r import ImageNetR

# key -> (class names in label order, (train, val, test) sizes of the full default fixture)
TRAINABLE = {
    "imagenet": (["tench", "goldfish", "great white shark"], (9, 6, 6)),
    "caltech101": (["face", "accordion", "airplane"], (6, 3, 6)),
    "oxford_pets": (["abyssinian", "american_bulldog", "american_pit_bull_terrier"], (12, 3, 3)),
    "stanford_cars": (["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Acura TL Sedan"], (12, 3, 3)),
    "oxford_flowers": (["pink primrose", "hard-leaved pocket orchid", "canterbury bells"], (6, 3, 6)),
    "food101": (["apple_pie", "baby_back_ribs", "baklava"], (6, 3, 6)),
    "fgvc_aircraft": (["707-320", "Cessna 172", "F/A-18"], (6, 3, 3)),
    "sun397": (["abbey", "airplane_cabin", "outdoor apartment_building"], (12, 3, 3)),
    "dtd": (["banded", "blotchy", "polka-dotted"], (6, 3, 6)),
    "eurosat": (["Annual Crop Land", "Forest", "Herbaceous Vegetation Land"], (6, 3, 6)),
    "ucf101": (["Apply_Eye_Makeup", "Apply_Lipstick", "Yo_Yo"], (12, 3, 3)),
}
VARIANTS = {
    "imagenetv2": ["tench", "goldfish", "great white shark"],
    "imagenet_sketch": ["tench", "goldfish", "great white shark"],
    "imagenet_a": ["stingray", "goldfinch", "junco"],
    "imagenet_r": ["goldfish", "great white shark", "hammerhead shark"],
}
SPLIT_FILES = {key: getattr(dataset_class(key), "split_filename") for key in TRAINABLE}
WITH_SPLIT_JSON = [key for key, name in SPLIT_FILES.items() if name]

pytestmark = pytest.mark.filterwarnings("ignore:few-shot train")


def sizes(ds):
    return len(ds.train_x), len(ds.val), len(ds.test)


def assert_consistent(ds):
    """Labels 0..C-1, one name per label, domain 0, every image on disk."""
    for data in (ds.train_x, ds.val or [], ds.test):
        for item in data:
            assert item.classname == ds.classnames[item.label] and item.domain == 0
            assert os.path.isfile(item.impath)
    assert sorted({item.label for item in ds.train_x}) == list(range(ds.num_classes))


# --------------------------------------------------------------------------------------------------
# Full splits: creation from raw files, the written JSON, reading it back


@pytest.mark.parametrize("key", TRAINABLE)
def test_raw_fixture_classnames_and_sizes(tmp_path, key):
    fixture(tmp_path, key)
    ds = load(key, tmp_path)
    names, expected_sizes = TRAINABLE[key]
    assert ds.classnames == names and ds.num_classes == 3
    assert sizes(ds) == expected_sizes
    assert_consistent(ds)


@pytest.mark.parametrize("key", WITH_SPLIT_JSON)
def test_split_json_written_in_spec_format_and_read_back(tmp_path, key, capsys):
    dataset_dir = fixture(tmp_path, key)
    created = load(key, tmp_path)
    split_path = dataset_dir / SPLIT_FILES[key]
    obj = json.loads(split_path.read_text())
    assert list(obj) == ["train", "val", "test"]
    prefix = Path(created.image_dir)
    for name, data in zip(("train", "val", "test"), (created.train_x, created.val, created.test)):
        assert obj[name] == [[Path(i.impath).relative_to(prefix).as_posix(), i.label, i.classname] for i in data]
    capsys.readouterr()
    again = load(key, tmp_path, seed=7)
    assert f"Reading split from {split_path}" in capsys.readouterr().out
    for a, b in zip((created.train_x, created.val, created.test), (again.train_x, again.val, again.test)):
        assert triples(a) == triples(b)


@pytest.mark.parametrize("key", WITH_SPLIT_JSON)
def test_published_split_json_is_used_as_is(tmp_path, key):
    dataset_dir = fixture(tmp_path, key, with_split_json=True)
    obj = json.loads((dataset_dir / SPLIT_FILES[key]).read_text())
    ds = load(key, tmp_path)
    prefix = Path(ds.image_dir)
    for name, data in zip(("train", "val", "test"), (ds.train_x, ds.val, ds.test)):
        assert [[Path(i.impath).relative_to(prefix).as_posix(), i.label, i.classname] for i in data] == obj[name]
    assert ds.classnames == TRAINABLE[key][0] and sizes(ds) == TRAINABLE[key][1]


def test_stanford_cars_paths_are_relative_to_the_dataset_folder(tmp_path):
    dataset_dir = fixture(tmp_path, "stanford_cars")
    load("stanford_cars", tmp_path)
    obj = json.loads((dataset_dir / "split_zhou_StanfordCars.json").read_text())
    assert all(rel.startswith("cars_train/") for rel, _, _ in obj["train"] + obj["val"])
    assert obj["test"][0] == ["cars_test/00001.jpg", 0, "2000 AM General Hummer SUV"]


def test_fgvc_aircraft_never_writes_a_split_file(tmp_path):
    dataset_dir = fixture(tmp_path, "fgvc_aircraft")
    ds = load("fgvc_aircraft", tmp_path)
    assert sorted(p.name for p in dataset_dir.glob("*.json")) == []
    assert [i.label for i in ds.val] == [0, 1, 2]  # variants.txt order


# --------------------------------------------------------------------------------------------------
# Few-shot, base/new


@pytest.mark.parametrize("key", TRAINABLE)
@pytest.mark.parametrize("subsample", ["all", "base", "new"])
def test_fewshot_then_subsample(tmp_path, key, subsample):
    fixture(tmp_path, key)
    full = load(key, tmp_path)
    ds = load(key, tmp_path, num_shots=2, subsample=subsample)
    names, (_, full_val, _) = TRAINABLE[key]
    kept = {"all": [0, 1, 2], "base": [0, 1], "new": [2]}[subsample]
    val_per_class = full_val // 3 if key != "imagenet" else None
    assert ds.classnames == [names[k] for k in kept]
    assert len(ds.train_x) == 2 * len(kept)
    assert sorted({i.label for i in ds.train_x}) == list(range(len(kept)))
    if key == "imagenet":
        assert ds.val is ds.test  # no val of its own
    else:
        assert len(ds.val) == min(2, val_per_class) * len(kept)
    # test = the kept classes' full test items, relabeled from 0
    expected_test = [(p, kept.index(label), name) for p, label, name in triples(full.test) if label in kept]
    assert triples(ds.test) == expected_test
    assert_consistent(ds)


@pytest.mark.parametrize("key", TRAINABLE)
def test_fewshot_is_deterministic_and_cache_equals_fresh(tmp_path, key):
    dataset_dir = fixture(tmp_path, key, with_split_json=True, train_per_class=6, test_per_class=4)
    fresh = load(key, tmp_path, num_shots=2, seed=3)
    cache = dataset_dir / "split_fewshot" / "shot_2-seed_3.json"
    assert set(json.loads(cache.read_text())) == ({"train", "meta"} if key == "imagenet" else {"train", "val", "meta"})
    cached = load(key, tmp_path, num_shots=2, seed=3)
    cache.unlink()
    fresh_again = load(key, tmp_path, num_shots=2, seed=3)
    for other in (cached, fresh_again):
        assert triples(other.train_x) == triples(fresh.train_x)
        assert triples(other.val) == triples(fresh.val)


def test_oxford_pets_five_classes_base_three_new_two(tmp_path):
    dataset_dir = fixture(tmp_path, "oxford_pets", num_classes=5, train_per_class=20, test_per_class=10)
    trainval = (dataset_dir / "annotations" / "trainval.txt").read_text().splitlines()
    assert len(trainval) == 100 and trainval[0] == "Abyssinian_1 1 1 1" and trainval[-1] == "beagle_20 5 2 4"
    base = load("oxford_pets", tmp_path, num_shots=16, subsample="base")
    assert base.classnames == ["abyssinian", "american_bulldog", "american_pit_bull_terrier"]
    assert (len(base.train_x), len(base.val), len(base.test)) == (48, 12, 30)
    new = load("oxford_pets", tmp_path, num_shots=16, subsample="new")
    assert new.classnames == ["basset_hound", "beagle"] and (len(new.train_x), len(new.test)) == (32, 20)
    assert {i.label for i in new.test} == {0, 1}


def test_oxford_pets_all_37_breeds(tmp_path):
    fixture(tmp_path, "oxford_pets", num_classes=37, train_per_class=3, test_per_class=1)
    ds = load("oxford_pets", tmp_path)
    assert ds.num_classes == 37 and ds.classnames[5] == "bengal" and ds.classnames[-1] == "yorkshire_terrier"
    assert "Bengal_1.jpg" in {Path(i.impath).name for i in ds.train_x + ds.val}


# --------------------------------------------------------------------------------------------------
# Dataset-specific rules


def test_caltech_ignored_folders_and_case_sensitive_labels(tmp_path):
    dataset_dir = fixture(tmp_path, "caltech101")
    assert (dataset_dir / "101_ObjectCategories" / "BACKGROUND_Google").is_dir()
    ds = load("caltech101", tmp_path)
    folder_of = {i.label: Path(i.impath).parent.name for i in ds.train_x}
    assert folder_of == {0: "Faces", 1: "accordion", 2: "airplanes"}
    assert not any("Faces_easy" in i.impath or "BACKGROUND" in i.impath for i in ds.train_x + ds.val + ds.test)


def test_flowers_classes_in_first_appearance_order(tmp_path):
    """The fixture interleaves classes 3, 2, 1, 3, 2, 1, ...: split lists follow that order."""
    fixture(tmp_path, "oxford_flowers")
    ds = load("oxford_flowers", tmp_path)
    assert [i.label for i in ds.val] == [2, 1, 0]
    assert [i.label for i in ds.train_x] == [2, 2, 1, 1, 0, 0]


def test_eurosat_renames_follow_sorted_folders(tmp_path):
    fixture(tmp_path, "eurosat", num_classes=10)
    ds = load("eurosat", tmp_path)
    assert ds.classnames == ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road",
                             "Industrial Buildings", "Pasture Land", "Permanent Crop Land",
                             "Residential Buildings", "River", "Sea or Lake"]


def test_pets_annotation_errors_name_the_line(tmp_path):
    dataset_dir = fixture(tmp_path, "oxford_pets")
    with open(dataset_dir / "annotations" / "test.txt", "a") as f:
        f.write("#comment line\n")
    with pytest.raises(DatasetFormatError, match=r"test.txt, line 4"):
        load("oxford_pets", tmp_path)


def test_annotation_referencing_missing_images(tmp_path):
    dataset_dir = fixture(tmp_path, "ucf101")
    shutil.rmtree(dataset_dir / "UCF-101-midframes" / "Yo_Yo")
    with pytest.raises(DatasetLayoutError, match=r"5 of 15 images listed in .*trainlist01.txt"):
        load("ucf101", tmp_path)


def test_too_few_images_for_the_split(tmp_path):
    fixture(tmp_path, "dtd", train_per_class=2, test_per_class=1)
    with pytest.raises(DatasetFormatError, match="at least 4 per class"):
        load("dtd", tmp_path)


# --------------------------------------------------------------------------------------------------
# ImageNet


def test_imagenet_flat_val_is_explained(tmp_path):
    dataset_dir = fixture(tmp_path, "imagenet")
    val = dataset_dir / "images" / "val"
    for image in list(val.rglob("*.JPEG")):
        image.rename(val / f"{image.parent.name}_{image.name}")
    for folder in [p for p in val.iterdir() if p.is_dir()]:
        folder.rmdir()
    with pytest.raises(DatasetLayoutError, match=r"no wnid folders.*images/val/<wnid>/"):
        load("imagenet", tmp_path)


def test_imagenet_train_and_val_wnids_must_agree(tmp_path):
    dataset_dir = fixture(tmp_path, "imagenet")
    shutil.rmtree(dataset_dir / "images" / "val" / "n01443537")
    with pytest.raises(DatasetLayoutError, match="only in train: \\['n01443537'\\]"):
        load("imagenet", tmp_path)


def test_imagenet_unknown_wnid(tmp_path):
    dataset_dir = fixture(tmp_path, "imagenet")
    lines = (dataset_dir / "classnames.txt").read_text().splitlines()
    (dataset_dir / "classnames.txt").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(DatasetFormatError, match="not listed in .*classnames.txt, first: 'n01440764'"):
        load("imagenet", tmp_path)


def test_imagenet_preprocessed_pickle_is_ignored(tmp_path, capsys):
    dataset_dir = fixture(tmp_path, "imagenet")
    (dataset_dir / "preprocessed.pkl").write_bytes(b"\x80\x04not a pickle we would ever load")
    ds = load("imagenet", tmp_path)
    assert "ignoring" in capsys.readouterr().out and len(ds.train_x) == 9
    assert not (dataset_dir / "preprocessed.json").exists()  # no cache: rescanned every run


# --------------------------------------------------------------------------------------------------
# Test-only ImageNet variants


@pytest.mark.parametrize("key", VARIANTS)
def test_variant_ignores_fewshot_and_subsampling(tmp_path, key):
    dataset_dir = fixture(tmp_path, key)
    ds = load(key, tmp_path, num_shots=2, subsample="base")
    assert ds.classnames == VARIANTS[key] and ds.val is None
    assert ds.train_x is ds.test and len(ds.test) == 6
    assert not (dataset_dir / "split_fewshot").exists()
    assert_consistent(ds)


@pytest.mark.parametrize("key, wnids, indices, subdir", [
    ("imagenet_a", ImageNetA.imagenet_wnids, ImageNetA.imagenet_indices, "imagenet-a"),
    ("imagenet_r", ImageNetR.imagenet_wnids, ImageNetR.imagenet_indices, "imagenet-r"),
])
def test_200_class_label_mapping(tmp_path, key, wnids, indices, subdir):
    """Label k = the k-th smallest ImageNet-1k index of the subset; names come from classnames.txt."""
    dataset_dir = fixture(tmp_path, key, num_classes=200, test_per_class=1)
    lines = (dataset_dir / "classnames.txt").read_text().splitlines()
    ds = load(key, tmp_path)
    assert ds.num_classes == 200 and len(ds.test) == 200
    for item in ds.test:
        assert Path(item.impath).parent.name == wnids[item.label]
        assert lines[indices[item.label]] == f"{wnids[item.label]} {item.classname}"
    assert not any("README" in i.impath for i in ds.test)


def test_sketch_stray_file_is_a_clear_error(tmp_path):
    dataset_dir = fixture(tmp_path, "imagenet_sketch")
    (dataset_dir / "images" / "README.txt").write_text("stray")
    with pytest.raises(DatasetLayoutError, match="only one folder per wnid.*README.txt"):
        load("imagenet_sketch", tmp_path)


def test_sketch_folder_named_sketch_gets_a_hint(tmp_path):
    dataset_dir = fixture(tmp_path, "imagenet_sketch")
    (dataset_dir / "images").rename(dataset_dir / "sketch")
    with pytest.raises(DatasetLayoutError, match="rename it to 'images/'"):
        load("imagenet_sketch", tmp_path)


def test_variant_without_classnames_says_to_copy_it(tmp_path):
    dataset_dir = fixture(tmp_path, "imagenet_r")
    (dataset_dir / "classnames.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="Copy imagenet/classnames.txt"):
        load("imagenet_r", tmp_path)


def test_imagenetv2_needs_every_numbered_folder_and_1000_names(tmp_path):
    dataset_dir = fixture(tmp_path, "imagenetv2")
    image_dir = dataset_dir / "imagenetv2-matched-frequency-format-val"
    (image_dir / "500").rmdir()
    with pytest.raises(DatasetLayoutError, match="0..999"):
        load("imagenetv2", tmp_path)
    (image_dir / "500").mkdir()
    lines = (dataset_dir / "classnames.txt").read_text().splitlines()
    (dataset_dir / "classnames.txt").write_text("\n".join(lines[:10]) + "\n")
    with pytest.raises(DatasetFormatError, match="lists 10 classes"):
        load("imagenetv2", tmp_path)


def test_variants_do_not_touch_the_rng(tmp_path):
    fixture(tmp_path, "imagenet_a")
    random.seed(4)
    state = random.getstate()
    dataset_class("imagenet_a")(make_cfg(tmp_path, "ImageNetA"))
    assert random.getstate() == state
