"""Shared dataset machinery (datasets/coop_common.py) on real miniature trees written to tmp_path.

Also holds the small helpers the other ``test_datasets_*`` modules import (``load``, ``fixture``).
"""
from __future__ import annotations

import importlib
import json
import os
import pickle
import random
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.kit.make_fixture_datasets import FIXTURES, write_fixture  # noqa: E402

from datasets import coop_common  # noqa: E402
from datasets.coop_common import DatasetFormatError, DatasetLayoutError  # noqa: E402

IMAGE_SIZE = 8


# --------------------------------------------------------------------------------------------------
# Helpers used by all dataset test modules


def dataset_class(key: str):
    module = importlib.import_module(f"datasets.{key}")
    return getattr(module, FIXTURES[key].registry)


def make_cfg(root, registry: str = "", num_shots: int = -1, seed: int = 1, subsample: str = "all"):
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample  # client key (train.py adds it)
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = registry
    cfg.DATASET.NUM_SHOTS = num_shots
    cfg.SEED = seed
    return cfg


def load(key: str, root, num_shots: int = -1, seed: int = 1, subsample: str = "all"):
    """Build dataset ``key`` the way train.py does: seed Python's random first, then construct."""
    cls = dataset_class(key)
    cfg = make_cfg(root, cls.__name__, num_shots=num_shots, seed=seed, subsample=subsample)
    random.seed(seed)
    return cls(cfg)


def fixture(root, key: str, **kwargs) -> Path:
    return write_fixture(key, root, image_size=IMAGE_SIZE, **kwargs)


def triples(data):
    return [(item.impath, item.label, item.classname) for item in data]


# --------------------------------------------------------------------------------------------------
# Locating the dataset


def test_missing_root_names_path_and_docs(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetLayoutError) as err:
        load("oxford_pets", root)
    assert str(root) in str(err.value) and "DATASETS.md" in str(err.value)
    assert not root.exists()


def test_missing_dataset_folder_is_an_error_and_not_created(tmp_path):
    with pytest.raises(DatasetLayoutError) as err:
        load("oxford_pets", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "oxford_pets") in message and "DATASETS.md" in message
    assert "python -m tools.data.check_datasets" in message
    assert list(tmp_path.iterdir()) == []


def test_split_fewshot_folder_created_inside_existing_dataset(tmp_path):
    dataset_dir = fixture(tmp_path, "oxford_pets")
    load("oxford_pets", tmp_path, num_shots=-1)
    assert (dataset_dir / "split_fewshot").is_dir()


# --------------------------------------------------------------------------------------------------
# Split JSON


def write_split(dataset_dir: Path, obj) -> Path:
    path = dataset_dir / "split_zhou_OxfordPets.json"
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_saved_split_format(tmp_path):
    dataset_dir = fixture(tmp_path, "oxford_pets")
    load("oxford_pets", tmp_path)
    path = dataset_dir / "split_zhou_OxfordPets.json"
    text = path.read_text()
    obj = json.loads(text)
    assert list(obj) == ["train", "val", "test"]
    assert text.startswith('{\n    "train": [')  # 4-space indentation as upstream
    for items in obj.values():
        for rel, label, classname in items:
            assert isinstance(rel, str) and not rel.startswith("/") and "\\" not in rel
            assert isinstance(label, int) and isinstance(classname, str)
            assert (dataset_dir / "images" / rel).is_file()
    assert obj["train"][0][2] == "abyssinian" and obj["train"][0][0].startswith("Abyssinian_")


def test_split_with_missing_images_reports_first_and_count(tmp_path):
    dataset_dir = fixture(tmp_path, "oxford_pets", with_split_json=True)
    split = json.loads((dataset_dir / "split_zhou_OxfordPets.json").read_text())
    gone = [split["val"][0][0], split["test"][1][0]]
    for rel in gone:
        (dataset_dir / "images" / rel).unlink()
    with pytest.raises(DatasetLayoutError) as err:
        load("oxford_pets", tmp_path)
    message = str(err.value)
    assert "split_zhou_OxfordPets.json" in message
    assert "2 of 18 images" in message and str(dataset_dir / "images" / gone[0]) in message


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "is not valid JSON"),
    ({"train": [], "val": []}, "must be a JSON object with the lists"),
    ({"train": [["a.jpg", 0]], "val": [], "test": []}, "item 0 of 'train'"),
    ({"train": [["a.jpg", "x", "c"]], "val": [], "test": []}, "item 0 of 'train'"),
    ({"train": {"a": 1}, "val": [], "test": []}, "'train' must be a list"),
])
def test_malformed_split_json_names_the_file(tmp_path, content, fragment):
    dataset_dir = fixture(tmp_path, "oxford_pets")
    path = write_split(dataset_dir, content)
    with pytest.raises(DatasetFormatError) as err:
        load("oxford_pets", tmp_path)
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_read_split_keeps_order_and_prefix(tmp_path):
    image_dir = tmp_path / "imgs"
    for name in ("b.jpg", "a.jpg", "c.jpg"):
        (image_dir / "x").mkdir(parents=True, exist_ok=True)
        (image_dir / "x" / name).write_bytes(b"jpg")
    obj = {"train": [["x/b.jpg", 1, "bee"], ["x/a.jpg", 0, "ant"]], "val": [["x/c.jpg", "2", "cat"]], "test": []}
    path = tmp_path / "split.json"
    path.write_text(json.dumps(obj))
    train, val, test = coop_common.read_split(str(path), str(image_dir))
    assert triples(train) == [(str(image_dir / "x/b.jpg"), 1, "bee"), (str(image_dir / "x/a.jpg"), 0, "ant")]
    assert triples(val) == [(str(image_dir / "x/c.jpg"), 2, "cat")] and test == []
    coop_common.save_split(train, val, test, str(tmp_path / "out" / "again.json"), str(image_dir))
    again = json.loads((tmp_path / "out" / "again.json").read_text())
    assert again == {"train": obj["train"], "val": [["x/c.jpg", 2, "cat"]], "test": []}


# --------------------------------------------------------------------------------------------------
# Split creation helpers


def make_images(folder: Path, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"img")
    return [str(folder / name) for name in names]


def datums(paths_labels):
    from dassl.data.datasets import Datum

    return [Datum(impath=p, label=label, classname=f"c{label}") for p, label in paths_labels]


@pytest.mark.parametrize("n, expected", [(4, (2, 1, 1)), (5, (2, 1, 2)), (7, (4, 1, 2)), (9, (4, 2, 3)),
                                         (120, (60, 24, 36))])
def test_split_counts_round_half_to_even(n, expected):
    assert coop_common.split_counts(n, 0.5, 0.2) == expected


def test_split_trainval_rounding_and_minimum(tmp_path):
    paths = make_images(tmp_path, [f"{i}.jpg" for i in range(8)])
    data = datums([(p, 0) for p in paths[:5]] + [(p, 1) for p in paths[5:]])
    random.seed(0)
    train, val = coop_common.split_trainval(data)
    assert [item.label for item in val] == [0, 1]  # round(5*0.2)=1, round(3*0.2)=1
    assert sorted(item.label for item in train) == [0] * 4 + [1] * 2
    assert {i.impath for i in train + val} == set(paths)
    with pytest.raises(DatasetFormatError, match="at least 3"):
        coop_common.split_trainval(datums([(paths[0], 0), (paths[1], 0)]))


def test_split_trainval_matches_upstream_rng_order(tmp_path):
    """One random.shuffle per class, classes in first-appearance order: reproducible by hand."""
    paths = make_images(tmp_path, [f"{i}.jpg" for i in range(10)])
    data = datums([(p, 1) for p in paths[:5]] + [(p, 0) for p in paths[5:]])
    random.seed(3)
    train, val = coop_common.split_trainval(data)
    random.seed(3)
    expected_val = []
    for group in (data[:5], data[5:]):
        group = list(group)
        random.shuffle(group)
        expected_val.append(group[0])
    assert val == expected_val


def test_split_class_folders(tmp_path):
    for folder in ("b_cls", "A_cls", "skip_me"):
        make_images(tmp_path / folder, [f"{i}.jpg" for i in range(5)])
    (tmp_path / "stray.txt").write_text("not a class")
    random.seed(0)
    train, val, test = coop_common.split_class_folders(str(tmp_path), ignored=["skip_me"],
                                                       new_cnames={"A_cls": "renamed"})
    assert (len(train), len(val), len(test)) == (4, 2, 4)  # 5 -> 2/1/2 per class (round half to even)
    assert {(i.label, i.classname) for i in train} == {(0, "renamed"), (1, "b_cls")}
    assert all("skip_me" not in i.impath for i in train + val + test)
    make_images(tmp_path / "small", ["1.jpg", "2.jpg", "3.jpg"])
    with pytest.raises(DatasetFormatError, match="small"):
        coop_common.split_class_folders(str(tmp_path), ignored=["skip_me"])


def test_split_class_folders_is_machine_independent(tmp_path):
    make_images(tmp_path / "k", [f"{i}.jpg" for i in (5, 3, 9, 1, 7, 2)])
    random.seed(1)
    first = triples(coop_common.split_class_folders(str(tmp_path))[0])
    random.seed(1)
    assert triples(coop_common.split_class_folders(str(tmp_path))[0]) == first


# --------------------------------------------------------------------------------------------------
# Base/new subsampling


def test_subsample_odd_count_and_relabel(tmp_path):
    paths = make_images(tmp_path, [f"{i}.jpg" for i in range(10)])
    train = datums([(paths[i], i % 5) for i in range(10)])
    test = datums([(paths[i], 4 - (i % 5)) for i in range(5)])
    base_train, base_test = coop_common.subsample_classes(train, test, subsample="base")
    assert sorted({i.label for i in base_train}) == [0, 1, 2] and sorted({i.label for i in base_test}) == [0, 1, 2]
    new_train, new_test = coop_common.subsample_classes(train, test, subsample="new")
    assert sorted({i.label for i in new_train}) == [0, 1]
    assert [(i.label, i.classname) for i in new_test] == [(1, "c4"), (0, "c3")]  # 4 -> 1, 3 -> 0
    assert coop_common.subsample_classes(train, test, subsample="all") == [train, test]
    with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES"):
        coop_common.subsample_classes(train, subsample="half")


def test_subsample_uses_labels_present_in_train(tmp_path):
    paths = make_images(tmp_path, [f"{i}.jpg" for i in range(4)])
    train = datums([(paths[0], 0), (paths[1], 2), (paths[2], 3)])  # label 1 absent
    test = datums([(paths[3], 1)])
    base_train, base_test = coop_common.subsample_classes(train, test, subsample="base")
    assert [i.label for i in base_train] == [0, 1] and base_test == []


def test_subsample_default_when_cfg_lacks_the_client_key(tmp_path):
    from dassl.config import get_cfg_default

    assert coop_common.subsample_setting(get_cfg_default()) == "all"


# --------------------------------------------------------------------------------------------------
# Few-shot cache


def test_fewshot_cache_is_relative_json_and_reused(tmp_path, capsys):
    dataset_dir = fixture(tmp_path, "oxford_pets", with_split_json=True)
    first = load("oxford_pets", tmp_path, num_shots=2, seed=5)
    cache = dataset_dir / "split_fewshot" / "shot_2-seed_5.json"
    obj = json.loads(cache.read_text())
    assert set(obj) == {"train", "val", "meta"} and obj["meta"]["num_shots"] == 2 and obj["meta"]["seed"] == 5
    assert all(not rel.startswith("/") for rel, _, _ in obj["train"] + obj["val"])
    capsys.readouterr()
    random.seed(999)  # the cached run must not depend on the RNG state
    again = dataset_class("oxford_pets")(make_cfg(tmp_path, "OxfordPets", num_shots=2, seed=5))
    assert "Loading preprocessed few-shot data from" in capsys.readouterr().out
    assert triples(again.train_x) == triples(first.train_x) and triples(again.val) == triples(first.val)


def test_fewshot_cache_survives_moving_the_dataset(tmp_path):
    fixture(tmp_path / "a", "oxford_pets", with_split_json=True)
    first = load("oxford_pets", tmp_path / "a", num_shots=2)
    os.rename(tmp_path / "a", tmp_path / "b")
    moved = load("oxford_pets", tmp_path / "b", num_shots=2, seed=1)
    assert [(Path(p).name, l, c) for p, l, c in triples(moved.train_x)] == \
        [(Path(p).name, l, c) for p, l, c in triples(first.train_x)]
    assert all(str(tmp_path / "b") in item.impath for item in moved.train_x)


def test_stale_fewshot_cache_is_regenerated(tmp_path, capsys):
    dataset_dir = fixture(tmp_path, "oxford_pets", with_split_json=True)
    load("oxford_pets", tmp_path, num_shots=2)
    split_path = dataset_dir / "split_zhou_OxfordPets.json"
    split = json.loads(split_path.read_text())
    split["train"] = [item for item in split["train"] if item[1] != 2]  # drop a class from train
    split_path.write_text(json.dumps(split))
    capsys.readouterr()
    ds = load("oxford_pets", tmp_path, num_shots=2)
    assert "regenerating" in capsys.readouterr().out
    assert ds.num_classes == 2


def test_pickle_cache_is_never_unpickled(tmp_path, capsys):
    dataset_dir = fixture(tmp_path, "oxford_pets", with_split_json=True)
    marker = tmp_path / "unpickled"

    class Trap:  # unpickling this creates ``marker``
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (dataset_dir / "split_fewshot").mkdir()
    (dataset_dir / "split_fewshot" / "shot_2-seed_1.pkl").write_bytes(pickle.dumps({"train": Trap()}))
    ds = load("oxford_pets", tmp_path, num_shots=2)
    assert "ignoring" in capsys.readouterr().out and not marker.exists()
    assert len(ds.train_x) == 6 and (dataset_dir / "split_fewshot" / "shot_2-seed_1.json").is_file()


def test_more_shots_than_available_takes_all_and_warns(tmp_path):
    fixture(tmp_path, "oxford_pets", with_split_json=True)
    with pytest.warns(UserWarning, match="fewer than 8 items"):
        ds = load("oxford_pets", tmp_path, num_shots=8)
    assert len(ds.train_x) == 12 and len(ds.val) == 3  # all 4 train / 1 val items per class


def test_no_warning_when_every_class_is_large_enough(tmp_path, recwarn):
    fixture(tmp_path, "oxford_pets", train_per_class=10)
    load("oxford_pets", tmp_path, num_shots=2)
    assert not [w for w in recwarn if "fewer than" in str(w.message)]
