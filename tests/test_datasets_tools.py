"""Fixture writer, dataset checker, split downloader, dataset configs and DATASETS.md."""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_datasets_common import REPO, dataset_class, fixture, load

from tools.data import check_datasets
from tools.data import download_splits
from tools.kit import make_fixture_datasets as mfd
from tools.data.check_datasets import COOP_BENCHMARKS, benchmarks, check_dataset

# DATASETS.md: config file -> (registry name, dataset_dir).
SPEC_TABLE = {
    "imagenet": ("ImageNet", "imagenet"), "caltech101": ("Caltech101", "caltech-101"),
    "oxford_pets": ("OxfordPets", "oxford_pets"), "stanford_cars": ("StanfordCars", "stanford_cars"),
    "oxford_flowers": ("OxfordFlowers", "oxford_flowers"), "food101": ("Food101", "food-101"),
    "fgvc_aircraft": ("FGVCAircraft", "fgvc_aircraft"), "sun397": ("SUN397", "sun397"),
    "dtd": ("DescribableTextures", "dtd"), "eurosat": ("EuroSAT", "eurosat"), "ucf101": ("UCF101", "ucf101"),
    "imagenetv2": ("ImageNetV2", "imagenetv2"), "imagenet_sketch": ("ImageNetSketch", "imagenet-sketch"),
    "imagenet_a": ("ImageNetA", "imagenet-adversarial"), "imagenet_r": ("ImageNetR", "imagenet-rendition"),
}


# --------------------------------------------------------------------------------------------------
# The tables agree with DATASETS.md and with each other


@pytest.mark.parametrize("key", SPEC_TABLE)
def test_names_agree_everywhere(key):
    registry, folder = SPEC_TABLE[key]
    cls = dataset_class(key)
    assert cls.__name__ == registry and cls.dataset_dir == folder
    assert (benchmarks()[key].__name__, benchmarks()[key].dataset_dir) == (registry, folder)
    assert (mfd.FIXTURES[key].registry, mfd.FIXTURES[key].folder) == (registry, folder)
    assert (REPO / "configs" / "datasets" / f"{key}.yaml").read_text() == f'DATASET:\n  NAME: "{registry}"\n'
    from dassl.data.datasets import DATASET_REGISTRY

    assert DATASET_REGISTRY.get(registry) is cls


def test_exactly_the_15_dataset_configs():
    assert sorted(p.stem for p in (REPO / "configs" / "datasets").glob("*.yaml")) == sorted(SPEC_TABLE)


# Multi-source domain generalisation: one config per (dataset, held-out domain) in configs/datasets/dg/.
DG_CONFIG_PREFIXES = {"pacs": "PACS", "vlcs": "VLCS", "office_home_dg": "OfficeHomeDG", "domainnet": "DomainNet",
                      "mini_domainnet": "miniDomainNet"}


def test_a_leave_one_domain_out_config_for_every_domain_of_every_dg_dataset():
    from dassl.config import get_cfg_default
    from dassl.data.datasets import DATASET_REGISTRY

    expected = {}
    for prefix, registry in DG_CONFIG_PREFIXES.items():
        domains = DATASET_REGISTRY.get(registry).domains
        expected.update({f"{prefix}_{target}": (registry, [d for d in domains if d != target], [target])
                         for target in domains})
    found = {}
    for path in sorted((REPO / "configs" / "datasets" / "dg").glob("*.yaml")):
        cfg = get_cfg_default()
        cfg.merge_from_file(str(path))
        found[path.stem] = (cfg.DATASET.NAME, list(cfg.DATASET.SOURCE_DOMAINS), list(cfg.DATASET.TARGET_DOMAINS))
    assert found == expected and len(found) == 22


def test_the_kit_offers_every_benchmark_and_refuses_unknown_names(tmp_path):
    from tools.kit import build as kit

    assert sorted(kit.ALL_DATASETS) == sorted(SPEC_TABLE)
    proc = subprocess.run([sys.executable, "-m", "tools.kit.build", str(tmp_path / "kit"), "--datasets", "pets"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown dataset(s) pets; choose from: oxford_pets imagenet" in proc.stderr
    assert not (tmp_path / "kit").exists()


def test_upstream_compatible_static_helpers():
    pets, dtd, imagenet = (dataset_class(k) for k in ("oxford_pets", "dtd", "imagenet"))
    for name in ("read_split", "save_split", "split_trainval", "subsample_classes"):
        assert callable(getattr(pets, name))
    assert callable(dtd.read_and_split_data) and callable(imagenet.read_classnames)


PUBLISHED_IDS = {  # the Google Drive ids CoOp's DATASETS.md publishes
    ("imagenet", "classnames.txt"): "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF",
    ("caltech101", "split_zhou_Caltech101.json"): "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN",
    ("oxford_pets", "split_zhou_OxfordPets.json"): "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs",
    ("stanford_cars", "split_zhou_StanfordCars.json"): "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT",
    ("oxford_flowers", "cat_to_name.json"): "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0",
    ("oxford_flowers", "split_zhou_OxfordFlowers.json"): "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT",
    ("food101", "split_zhou_Food101.json"): "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl",
    ("sun397", "split_zhou_SUN397.json"): "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq",
    ("dtd", "split_zhou_DescribableTextures.json"): "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x",
    ("eurosat", "split_zhou_EuroSAT.json"): "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o",
    ("ucf101", "UCF-101-midframes.zip"): "10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O",
    ("ucf101", "split_zhou_UCF101.json"): "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y",
}


def test_drive_ids_are_the_published_ones():
    ids = {(key, rel): drive_id for key, cls in benchmarks().items() for rel, drive_id in cls.download_ids.items()}
    assert ids == PUBLISHED_IDS
    for key, rel in ids:
        if rel.startswith("split_zhou_"):
            assert rel == dataset_class(key).split_filename


# --------------------------------------------------------------------------------------------------
# Fixture writer


def test_fixture_images_are_real_files_of_the_requested_size(tmp_path):
    dataset_dir = fixture(tmp_path, "oxford_pets")
    with Image.open(dataset_dir / "images" / "Abyssinian_1.jpg") as image:
        assert image.format == "JPEG" and image.size == (8, 8) and image.mode == "RGB"


def test_fixture_images_are_learnable(tmp_path):
    """Nearest centroid on simple image statistics separates the classes: colour quantiles (the two
    colours of a class, whatever the random pattern shift) and gradient energies (the texture)."""
    mfd.write_fixture("oxford_pets", tmp_path, num_classes=10, train_per_class=6, test_per_class=4, image_size=16)
    ds = load("oxford_pets", tmp_path)

    def features(items):
        rows = []
        for item in items:
            image = np.asarray(Image.open(item.impath), dtype=float)
            grey = image.mean(2)
            texture = [np.abs(np.diff(grey, axis=1)).mean(), np.abs(np.diff(grey, axis=0)).mean(),
                       np.abs(grey[1:, 1:] - grey[:-1, :-1]).mean()]
            rows.append(np.concatenate([np.quantile(image.reshape(-1, 3), [0.1, 0.5, 0.9], axis=0).ravel(), texture]))
        return np.stack(rows)

    train, test = features(ds.train_x), features(ds.test)
    mean, std = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mean) / std, (test - mean) / std
    labels = np.array([i.label for i in ds.train_x])
    centroids = np.stack([train[labels == c].mean(0) for c in range(ds.num_classes)])
    predicted = ((test[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (predicted == np.array([i.label for i in ds.test])).mean() == 1.0
    # ... and the images are not copies of each other (per-image noise and shifts)
    raw = [Image.open(i.impath).tobytes() for i in ds.train_x]
    assert len(set(raw)) == len(raw)


def test_fixture_is_deterministic(tmp_path):
    a = mfd.write_fixture("eurosat", tmp_path / "a", image_size=8, seed=3)
    b = mfd.write_fixture("eurosat", tmp_path / "b", image_size=8, seed=3)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_fixture_refuses_to_overwrite_unless_asked(tmp_path):
    dataset_dir = fixture(tmp_path, "dtd")
    with pytest.raises(FileExistsError, match="overwrite"):
        fixture(tmp_path, "dtd")
    (dataset_dir / "marker").write_text("x")
    fixture(tmp_path, "dtd", overwrite=True)
    assert not (dataset_dir / "marker").exists()


def test_fixture_accepts_registry_and_folder_names(tmp_path):
    assert mfd.write_fixture("DescribableTextures", tmp_path / "a", image_size=8).name == "dtd"
    assert mfd.write_fixture("food-101", tmp_path / "b", image_size=8).name == "food-101"
    with pytest.raises(KeyError, match="choose from"):
        mfd.write_fixture("cifar10", tmp_path)
    with pytest.raises(ValueError, match="37 classes"):
        mfd.write_fixture("oxford_pets", tmp_path / "c", num_classes=38)


def test_imagenet_class_list_is_standard_ordered():
    wnids = [wnid for wnid, _ in mfd.IMAGENET_CLASSES]
    assert len(wnids) == 1000 and wnids == sorted(wnids) and len(set(wnids)) == 1000
    assert mfd.IMAGENET_CLASSES[:3] == [("n01440764", "tench"), ("n01443537", "goldfish"),
                                        ("n01484850", "great white shark")]
    imagenet_a = dataset_class("imagenet_a")
    assert all(wnids[i] == w for i, w in zip(imagenet_a.imagenet_indices, imagenet_a.imagenet_wnids))


def test_imagenet_family_shares_the_look_of_a_class(tmp_path):
    """Same wnid -> same colours in ImageNet and ImageNet-R (domain-generalisation evaluation)."""
    inet = fixture(tmp_path, "imagenet", test_per_class=4)
    rend = fixture(tmp_path, "imagenet_r", test_per_class=4)

    def mean_colour(folder):
        return np.mean([np.asarray(Image.open(p), dtype=float).mean((0, 1)) for p in sorted(folder.iterdir())], 0)

    goldfish = mean_colour(inet / "images" / "val" / "n01443537")
    assert np.abs(goldfish - mean_colour(rend / "imagenet-r" / "n01443537")).max() < 25
    assert np.abs(goldfish - mean_colour(rend / "imagenet-r" / "n01494475")).max() > 25


def test_fixture_cli(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.kit.make_fixture_datasets", str(tmp_path), "oxford_pets", "SUN397",
                           "--num-classes", "4", "--image-size", "8", "--with-split-json"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "sun397" / "split_zhou_SUN397.json").is_file()
    assert len((tmp_path / "oxford_pets" / "annotations" / "test.txt").read_text().splitlines()) == 4
    bad = subprocess.run([sys.executable, "-m", "tools.kit.make_fixture_datasets", str(tmp_path), "nope"],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown dataset 'nope'" in bad.stderr


# --------------------------------------------------------------------------------------------------
# check_datasets


@pytest.fixture(scope="module")
def good_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    mfd.write_all(root, image_size=8)
    return root


def test_check_all_fixtures_ok_and_writes_nothing(good_data, capsys):
    before = sorted(p.relative_to(good_data) for p in good_data.rglob("*"))
    assert check_datasets.main([str(good_data)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out if not line.startswith(" ")] == [["OK", key] for key in COOP_BENCHMARKS]
    assert "3 classes, train 12 / val 3 / test 3" in next(line for line in out if " oxford_pets " in line)
    assert sorted(p.relative_to(good_data) for p in good_data.rglob("*")) == before


def test_check_with_split_json_fixture(tmp_path):
    fixture(tmp_path, "caltech101", with_split_json=True)
    report = check_dataset(tmp_path, "Caltech101")
    assert report.ok and report.summary == "3 classes, train 6 / val 3 / test 6"
    assert not any("split_zhou" in note for note in report.notes)


def broken(tmp_path, key, **kwargs) -> Path:
    return fixture(tmp_path, key, **kwargs)


def problems_of(root, key) -> str:
    report = check_dataset(root, key)
    assert not report.ok
    return "\n".join(report.problems)


def test_check_flat_imagenet_val(tmp_path):
    val = broken(tmp_path, "imagenet") / "images" / "val"
    for image in list(val.rglob("*.JPEG")):
        image.rename(val / f"{image.parent.name}_{image.name}")
    for folder in [p for p in val.iterdir() if p.is_dir()]:
        folder.rmdir()
    assert "flat ILSVRC layout" in problems_of(tmp_path, "imagenet")


def test_check_nested_stanford_cars_mirror(tmp_path):
    cars_train = broken(tmp_path, "stanford_cars") / "cars_train"
    inner = cars_train / "cars_train"
    inner.mkdir()
    for image in list(cars_train.glob("*.jpg")):
        image.rename(inner / image.name)
    assert "cars_train/cars_train/ is nested" in problems_of(tmp_path, "stanford_cars")


def test_check_per_class_stanford_cars_mirror(tmp_path):
    cars_test = broken(tmp_path, "stanford_cars") / "cars_test"
    (cars_test / "Acura RL Sedan 2012").mkdir()
    for image in list(cars_test.glob("*.jpg")):
        image.rename(cars_test / "Acura RL Sedan 2012" / image.name)
    assert "cars_test/ holds per-class folders" in problems_of(tmp_path, "stanford_cars")


def test_check_eurosat_folder_not_named_2750(tmp_path):
    dataset_dir = broken(tmp_path, "eurosat")
    (dataset_dir / "2750").rename(dataset_dir / "EuroSAT_RGB")
    assert "rename (move) that folder to eurosat/2750/" in problems_of(tmp_path, "eurosat")


def test_check_sketch_top_folder(tmp_path):
    dataset_dir = broken(tmp_path, "imagenet_sketch")
    (dataset_dir / "images").rename(dataset_dir / "sketch")
    assert "rename imagenet-sketch/sketch/ to imagenet-sketch/images/" in problems_of(tmp_path, "imagenet_sketch")


@pytest.mark.parametrize("key", ["imagenet_a", "imagenet_r", "imagenetv2", "imagenet_sketch"])
def test_check_variant_without_classnames(tmp_path, key):
    (broken(tmp_path, key) / "classnames.txt").unlink()
    assert "missing classnames.txt; fix: copy imagenet/classnames.txt" in problems_of(tmp_path, key)


def test_check_wrong_archive_for_imagenet_a(tmp_path):
    dataset_dir = broken(tmp_path, "imagenet_a")
    shutil.copytree(dataset_dir / "imagenet-a" / "n01498041", dataset_dir / "imagenet-a" / "n01440764")
    assert "not ImageNet-A classes (first: n01440764)" in problems_of(tmp_path, "imagenet_a")


def test_check_unsorted_classnames_for_imagenetv2(tmp_path):
    text = broken(tmp_path, "imagenetv2") / "classnames.txt"
    lines = text.read_text().splitlines()
    text.write_text("\n".join([lines[1], lines[0]] + lines[2:]) + "\n")
    assert "not in the standard sorted-wnid order" in problems_of(tmp_path, "imagenetv2")


def test_check_misnamed_dataset_folder(tmp_path):
    broken(tmp_path, "food101").rename(tmp_path / "Food-101")
    assert "found Food-101/ instead; fix: rename it to food-101/" in problems_of(tmp_path, "food101")


def test_check_missing_dataset_folder(tmp_path):
    message = problems_of(tmp_path, "oxford_pets")
    assert "missing oxford_pets/; fix: download it (https://www.robots.ox.ac.uk/~vgg/data/pets" in message


def test_check_partition_files_one_level_too_deep(tmp_path):
    dataset_dir = broken(tmp_path, "sun397")
    (dataset_dir / "Partitions").mkdir()
    for name in ("ClassName.txt", "Training_01.txt", "Testing_01.txt"):
        (dataset_dir / name).rename(dataset_dir / "Partitions" / name)
    message = problems_of(tmp_path, "sun397")
    assert "missing split_zhou_SUN397.json; fix: gdown 1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq" in message
    assert "missing Training_01.txt: found it at Partitions/Training_01.txt; fix: move it to sun397/Training_01.txt" \
        in message


def test_check_unextracted_archive(tmp_path):
    dataset_dir = broken(tmp_path, "caltech101")
    shutil.rmtree(dataset_dir / "101_ObjectCategories")
    (dataset_dir / "101_ObjectCategories.tar.gz").write_bytes(b"archive")
    assert "101_ObjectCategories.tar.gz is not extracted" in problems_of(tmp_path, "caltech101")


def test_check_split_json_with_missing_images(tmp_path):
    dataset_dir = broken(tmp_path, "dtd", with_split_json=True)
    shutil.rmtree(dataset_dir / "images" / "blotchy")
    assert "5 of 15 images listed in" in problems_of(tmp_path, "dtd")


def test_check_notes_ignored_pickles(tmp_path):
    dataset_dir = broken(tmp_path, "oxford_pets")
    (dataset_dir / "split_fewshot").mkdir()
    (dataset_dir / "split_fewshot" / "shot_16-seed_1.pkl").write_bytes(b"x")
    report = check_dataset(tmp_path, "oxford_pets")
    assert report.ok and any("shot_16-seed_1.pkl is ignored" in note for note in report.notes)


def test_check_decodes_every_image_and_lists_the_unreadable_ones(tmp_path, capsys):
    dataset_dir = fixture(tmp_path, "oxford_pets")
    images = sorted((dataset_dir / "images").rglob("*.jpg"))
    truncated, not_an_image = images[0], images[-1]
    truncated.write_bytes(truncated.read_bytes()[:-40])  # a download cut short: the header still reads
    not_an_image.write_bytes(b"<html>403 Forbidden</html>")
    assert check_datasets.main([str(tmp_path), "oxford_pets", "--workers", "2"]) == 1
    out = capsys.readouterr().out
    assert f"oxford_pets      {tmp_path / 'oxford_pets'}: 2 problem(s)\n" in out  # one per bad image
    assert f"fix: 2 of {len(images)} images cannot be decoded: download or extract them again" in out
    assert f"unreadable: {truncated} (OSError: image file is truncated" in out
    assert f"unreadable: {not_an_image} (UnidentifiedImageError" in out
    assert check_datasets.main([str(tmp_path), "oxford_pets", "--fast"]) == 0  # layout and splits only


def test_check_main_exit_codes(tmp_path, capsys):
    fixture(tmp_path, "oxford_pets")
    assert check_datasets.main([str(tmp_path), "OxfordPets"]) == 0
    assert check_datasets.main([str(tmp_path), "oxford_pets", "dtd"]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM  dtd" in out and "1 of 2 dataset(s) need fixing: dtd" in out
    with pytest.raises(SystemExit) as exc:
        check_datasets.main([str(tmp_path), "cifar10"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_check_cli(tmp_path):
    fixture(tmp_path, "oxford_pets")
    proc = subprocess.run([sys.executable, "-m", "tools.data.check_datasets", str(tmp_path), "oxford_pets", "dtd"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout.startswith("OK ") and "PROBLEM  dtd" in proc.stdout


# --------------------------------------------------------------------------------------------------
# download_splits (offline parts)


def test_download_plan_targets(tmp_path):
    plan = download_splits.planned_downloads(tmp_path, ["oxford_flowers", "ImageNet"])
    assert [(d.dataset, d.target.relative_to(tmp_path).as_posix()) for d in plan] == [
        ("oxford_flowers", "oxford_flowers/cat_to_name.json"),
        ("oxford_flowers", "oxford_flowers/split_zhou_OxfordFlowers.json"),
        ("imagenet", "imagenet/classnames.txt")]
    assert plan[2].url == "https://drive.google.com/uc?id=1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"
    assert len(download_splits.planned_downloads(tmp_path)) == 12


def test_download_dry_run_skips_missing_folders_and_keeps_files(tmp_path, capsys):
    fixture(tmp_path, "ucf101", with_split_json=True)
    fixture(tmp_path, "oxford_pets")
    assert download_splits.main([str(tmp_path), "ucf101", "oxford_pets", "dtd", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "keep  " in out and "UCF-101-midframes.zip (exists)" in out  # the extracted folder counts
    assert "would download https://drive.google.com/uc?id=1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs" in out
    assert "skip  " in out and "dtd" in out


def test_copy_imagenet_classnames_into_variants(tmp_path):
    fixture(tmp_path, "imagenet")
    for key in ("imagenet_a", "imagenet_r"):
        (fixture(tmp_path, key) / "classnames.txt").unlink()
    copied = download_splits.copy_imagenet_classnames(tmp_path, log=lambda _: None)
    assert sorted(p.parent.name for p in copied) == ["imagenet-adversarial", "imagenet-rendition"]
    assert check_dataset(tmp_path, "imagenet_a").ok


# --------------------------------------------------------------------------------------------------
# DATASETS.md


DOC = (REPO / "DATASETS.md").read_text()


@pytest.mark.parametrize("key", COOP_BENCHMARKS)
def test_datasets_md_covers_every_dataset(key):
    cls = benchmarks()[key]
    section = DOC.split(f"\n## {cls.__name__}\n", 1)[1].split("\n## ", 1)[0]
    assert f"python -m tools.data.check_datasets $DATA {key}" in section
    assert f"{cls.dataset_dir}/" in section
    for drive_id in cls.download_ids.values():
        assert drive_id in section
    for source in cls.sources:  # the dataset class and the document name the same downloads
        for url in re.findall(r"https?://\S+", source):
            assert url in section


def test_datasets_md_new_dataset_example_works(tmp_path):
    """The 'Adding a new dataset' example registers, loads and trains/evaluates on a class-folder tree."""
    section = DOC.split("## Adding a new dataset", 1)[1]
    code = re.search(r"```python\n# datasets/my_dataset.py\n(.*?)```", section, re.S).group(1)
    yaml = re.search(r"```yaml\n# configs/datasets/my_dataset.yaml\n(.*?)```", section, re.S).group(1)
    assert yaml == 'DATASET:\n  NAME: "MyDataset"\n'
    module_path = tmp_path / "my_dataset.py"
    module_path.write_text(code)
    from dassl.data.datasets import DATASET_REGISTRY

    spec = importlib.util.spec_from_file_location("datasets.my_dataset_doc_example", module_path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        for folder in ("cat", "dog", "emu"):
            for n in range(5):
                mfd.write_image(tmp_path / "data" / "my_dataset" / "images" / folder / f"{n}.jpg", len(folder), n,
                                mfd.Params(3, 3, 2, 8, 0, "doc"))
        ds = load_registered(DATASET_REGISTRY.get("MyDataset"), tmp_path / "data")
        assert ds.classnames == ["cat", "dog", "emu"] and len(ds.train_x) == 6
        assert (tmp_path / "data" / "my_dataset" / "split_zhou_MyDataset.json").is_file()
    finally:
        DATASET_REGISTRY._obj_map.pop("MyDataset", None)


def load_registered(cls, root):
    from test_datasets_common import make_cfg

    return cls(make_cfg(root, cls.__name__))
